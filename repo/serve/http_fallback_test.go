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

// TestFileHandlerFallbackAndCaching: a path the fallback maps is served
// from where it points (repo answers DIST/9.4/ from DIST/9/), and the
// signature beside repomd.xml is no-cache as repomd.xml is, while the
// content-addressed files are not.
func TestFileHandlerFallbackAndCaching(t *testing.T) {
	tree := t.TempDir()
	dir := filepath.Join(tree, "main/prod/el/9/x86_64/repodata")
	for name, body := range map[string]string{
		"repomd.xml":          "<repomd/>",
		"repomd.xml.asc":      "SIGNATURE",
		"abc-primary.xml.zst": "PRIMARY",
	} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fallback := func(root *os.Root, p string) (string, bool) {
		if np := strings.Replace(p, "/el/9.4/", "/el/9/", 1); np != p {
			return np, true
		}
		return "", false
	}
	h, closeRoot, err := NewFileHandler(tree, nil, fallback)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRoot()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, c := range []struct {
		path, body, cache string
	}{
		{"/main/prod/el/9/x86_64/repodata/repomd.xml.asc", "SIGNATURE", "no-cache"},
		{"/main/prod/el/9/x86_64/repodata/abc-primary.xml.zst", "PRIMARY", ""},
		{"/main/prod/el/9.4/x86_64/repodata/repomd.xml", "<repomd/>", "no-cache"},
		{"/main/prod/el/9.4/x86_64/repodata/abc-primary.xml.zst", "PRIMARY", ""},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || string(b) != c.body || resp.Header.Get("Cache-Control") != c.cache {
			t.Errorf("GET %s: %d %q Cache-Control %q, want 200 %q %q", c.path, resp.StatusCode, b, resp.Header.Get("Cache-Control"), c.body, c.cache)
		}
	}
}
