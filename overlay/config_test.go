package overlay

import (
	"reflect"
	"testing"
)

func TestEscapeLayer(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/plain/path", "/plain/path"},
		{"/a,b", `/a\,b`},
		{"/a:b", `/a\:b`},
		{`/a\b`, `/a\\b`},
		{`/,:\`, `/\,\:\\`},
		{"/spaces and\nnewline", "/spaces and\nnewline"},
		{"", ""},
	} {
		if got := escapeLayer(c.in); got != c.want {
			t.Errorf("escapeLayer(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestMountPoints(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", nil},
		{"plain", "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n", []string{"/"}},
		{"octal escapes", `40 26 0:50 / /tmp/a\040b\011c\012d\134e rw - overlay overlay rw` + "\n",
			[]string{"/tmp/a b\tc\nd\\e"}},
		{"backslash not followed by octal", `1 2 0:1 / /x\y rw - tmpfs t rw`, []string{`/x\y`}},
		{"escape at the very end", `1 2 0:1 / /x\040 rw - tmpfs t rw`, []string{`/x `}},
		{"short line ignored", "1 2 3\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := mountPoints(c.in); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{
		{"/a", "/a", true},
		{"/a/b", "/a", true},
		{"/a/b", "/a/", true},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/anything", "/", true},
	} {
		if got := within(c.p, c.dir); got != c.want {
			t.Errorf("within(%q, %q) = %v, want %v", c.p, c.dir, got, c.want)
		}
	}
}
