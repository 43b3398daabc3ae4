package nevra

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckRefusesHostileFields(t *testing.T) {
	ok := [5]string{"hello", "", "1.0", "1.el9", "noarch"}
	cases := []struct {
		field int // index into name, epoch, version, release, arch
		value string
		want  string // in the message
	}{
		{0, "../../../../tmp/x/ESCAPED", `"/"`},
		{0, "/abs", `"/"`},
		{0, "a..b", `".."`},
		{0, "..", `".."`},
		{0, ".hidden", "starts with"},
		{0, "-dash", "starts with"},
		{0, "new\nline", "whitespace"},
		{0, "tab\tname", "whitespace"},
		{0, "sp ace", "whitespace"},
		{0, "esc\x1b[2J", "control character"},
		{0, "bel\a", "control character"},
		{0, "nul\x00", "control character"},
		{0, "del\x7f", "control character"},
		{0, "caf\xc3\xa9", "non-ASCII"},
		{0, "%{name}", "'%'"},
		{0, "semi;colon", "';'"},
		{0, "quo'te", `'\''`},
		{0, "", "empty"},
		{0, strings.Repeat("a", MaxName+1), "long"},
		{1, "1a", "epoch contains"},
		{1, "-1", "epoch contains"},
		{1, "12345678901", "digits long"},
		{2, "1/../../x", `"/"`},
		{2, "1-2", `'-'`},
		{2, "1..2", `".."`},
		{2, "1:2", `':'`},
		{2, "", "empty"},
		{3, "1.el9/../../x", `"/"`},
		{3, "1-el9", `'-'`},
		{3, "1.el9\n", "whitespace"},
		{4, "x86/64", `"/"`},
		{4, "x86-64", `'-'`},
		{4, "x86.64", `'.'`},
		{4, "..", `'.'`},
		{4, "", "empty"},
	}
	for _, c := range cases {
		f := ok
		f[c.field] = c.value
		err := Check(f[0], f[1], f[2], f[3], f[4])
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", f, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%q) = %q, want it to mention %s", f, err, c.want)
		}
		if strings.ContainsAny(err.Error(), "\n\r\x1b\a\x00") {
			t.Errorf("Check(%q): message %q carries a raw control character", f, err)
		}
		if _, err := FileName(f[0], f[2], f[3], f[4]); c.field != 1 && !errors.Is(err, ErrInvalid) {
			t.Errorf("FileName(%q) = %v, want ErrInvalid", f, err)
		}
	}
}

func TestCheckAcceptsRealPackages(t *testing.T) {
	for _, f := range [][5]string{
		{"hello", "", "1.0", "1.el9", "noarch"},
		{"libstdc++", "0", "11.4.1", "3.el9", "x86_64"},
		{"kernel-core", "", "5.14.0", "427.13.1.el9_4", "x86_64"},
		{"python3.11-pip", "", "22.3.1", "4.el9", "noarch"},
		{"fonts_x", "2", "1.0~rc1^20240101git", "1.fc40", "aarch64"},
		{"_underscore", "", "1", "1", "src"},
		{"super_kernel", "", "6.0.1", "2", "x86_64"},
	} {
		if err := Check(f[0], f[1], f[2], f[3], f[4]); err != nil {
			t.Errorf("Check(%q) = %v, want nil", f, err)
		}
		if err := Spec(f[0] + "-" + f[2] + "-" + f[3] + "." + f[4]); err != nil {
			t.Errorf("Spec of %q = %v, want nil", f, err)
		}
	}
	if err := Spec("foo-1:2.0-3.el9.x86_64.rpm"); err != nil {
		t.Errorf("Spec with epoch and .rpm: %v", err)
	}
	for _, s := range []string{"../../../../prod/el/9/x86_64/rtok-1.0-1.el9.noarch", "a b", "a\n", "", "-x", "a/b", "a..b"} {
		if err := Spec(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Spec(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

// FuzzFileName: whatever the header says, an accepted file name is one
// plain path element of safe bytes.
func FuzzFileName(f *testing.F) {
	f.Add("hello", "1.0", "1.el9", "noarch")
	f.Add("../../x", "1/..", "1.el9/../..", "..")
	f.Add("a\nb", "1\x00", "\x1b", "x86_64")
	f.Fuzz(func(t *testing.T, name, version, release, arch string) {
		fn, err := FileName(name, version, release, arch)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// ".." inside one element ("0-0-..0.rpm" from release ".") is a
		// name like any other; what matters is that it is one element.
		if strings.ContainsAny(fn, "/\\\x00 \n") || fn == ".." || strings.HasPrefix(fn, ".") || len(fn) > 255 {
			t.Fatalf("FileName accepted %q", fn)
		}
	})
}
