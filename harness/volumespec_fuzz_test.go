package harness

import (
	"path"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseVolume: whatever the spec, ParseVolume returns a volume or an error that quotes the
// spec; a volume has a host path and an absolute container path other than "/", and its String
// parses back to the same volume.
func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/data:/in", "/data:/in:ro", `/data\:2024:/in\:x:rw`, `/my\ data:/in`, `/a\\b:/in`, ":/in", `/x:/y\`, "a:b:c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		v, err := ParseVolume(spec)
		if err != nil {
			if !strings.Contains(err.Error(), "bad volume spec "+strconv.Quote(spec)) {
				t.Fatalf("ParseVolume(%q): error %q does not quote the spec", spec, err)
			}
			return
		}
		if v.Host == "" || !path.IsAbs(v.Container) || path.Clean(v.Container) == "/" {
			t.Fatalf("ParseVolume(%q) = %+v: accepted a volume it should refuse", spec, v)
		}
		back, err := ParseVolume(v.String())
		if err != nil || back != v {
			t.Fatalf("ParseVolume(%q) = %+v; its String %q parses to %+v, %v", spec, v, v.String(), back, err)
		}
	})
}
