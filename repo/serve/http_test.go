package serve

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileHandler(t *testing.T) {
	base := t.TempDir()
	tree := filepath.Join(base, "repo")
	secret := filepath.Join(base, "keys", "signing.asc")
	for path, body := range map[string]string{
		filepath.Join(tree, "RPM-GPG-KEY-repoctl"):                          "PUBLIC KEY",
		filepath.Join(tree, "main/staging/el/9/x86_64/repodata/repomd.xml"): "<repomd/>",
		filepath.Join(tree, "main/staging/el/9/x86_64/.repodata.lock"):      "lock",
		secret: "PRIVATE KEY",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink out of the tree must not be followed.
	if err := os.Symlink(secret, filepath.Join(tree, "escape.asc")); err != nil {
		t.Fatal(err)
	}
	h, closeRoot, err := NewFileHandler(tree, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRoot()
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(method, path string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Send the path as is, without Go's client cleaning it.
		req.URL.Opaque = path
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, _ := get("GET", "/RPM-GPG-KEY-repoctl"); code != 200 || body != "PUBLIC KEY" {
		t.Errorf("key: %d %q", code, body)
	}
	code, body, hdr := get("GET", "/main/staging/el/9/x86_64/repodata/repomd.xml")
	if code != 200 || body != "<repomd/>" || hdr.Get("Cache-Control") != "no-cache" {
		t.Errorf("repomd: %d %q %v", code, body, hdr)
	}
	for _, p := range []string{
		"/main/staging/el/9/x86_64/.repodata.lock",
		"/../keys/signing.asc",
		"/main/../../keys/signing.asc",
		"/%2e%2e/keys/signing.asc",
		"/escape.asc",
	} {
		code, body, _ := get("GET", p)
		if code == 200 || strings.Contains(body, "PRIVATE") {
			t.Errorf("GET %s: %d %q, want refused", p, code, body)
		}
	}
	if code, _, _ := get("PUT", "/RPM-GPG-KEY-repoctl"); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", code)
	}
	if code, body, _ := get("HEAD", "/RPM-GPG-KEY-repoctl"); code != 200 || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
}
