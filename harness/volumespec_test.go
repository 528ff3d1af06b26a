package harness

import (
	"strings"
	"testing"
)

func TestParseVolume(t *testing.T) {
	tests := []struct {
		name, spec string
		want       VolumeSpec
		err        string // substring of the error; "" for success
	}{
		{name: "rw", spec: "/data:/in", want: VolumeSpec{Host: "/data", Container: "/in"}},
		{name: "ro", spec: "/data:/in:ro", want: VolumeSpec{Host: "/data", Container: "/in", ReadOnly: true}},
		{name: "explicit rw", spec: "/data:/in:rw", want: VolumeSpec{Host: "/data", Container: "/in"}},
		{name: "relative host", spec: "data:/in", want: VolumeSpec{Host: "data", Container: "/in"}},
		{name: "escaped colon", spec: `/data\:2024:/in\:x:ro`, want: VolumeSpec{Host: "/data:2024", Container: "/in:x", ReadOnly: true}},
		{name: "escaped space", spec: `/my\ data:/in`, want: VolumeSpec{Host: "/my data", Container: "/in"}},
		{name: "plain space", spec: `/my data:/in dir`, want: VolumeSpec{Host: "/my data", Container: "/in dir"}},
		{name: "escaped backslash", spec: `/a\\b:/in`, want: VolumeSpec{Host: `/a\b`, Container: "/in"}},
		{name: "file volume", spec: "/etc/hosts:/etc/hosts:ro", want: VolumeSpec{Host: "/etc/hosts", Container: "/etc/hosts", ReadOnly: true}},

		{name: "no colon", spec: "/data", err: `bad volume spec "/data": want HOST:CTR[:ro]`},
		{name: "empty", spec: "", err: `bad volume spec "": want HOST:CTR[:ro]`},
		{name: "bad mode", spec: "/data:/in:rx", err: `mode "rx": want ro or rw`},
		{name: "too many", spec: "/a:/b:/c:ro", err: "4 fields"},
		{name: "unescaped colon", spec: "/data:2024:/in", err: `mode "/in"`},
		{name: "empty host", spec: ":/in", err: "empty host path"},
		{name: "empty ctr", spec: "/data:", err: "empty container path"},
		{name: "relative ctr", spec: "/data:in", err: `container path "in" is not absolute`},
		{name: "root ctr", spec: "/data:/", err: "cannot mount over the container's root"},
		{name: "trailing backslash", spec: `/data:/in\`, err: "trailing backslash"},
		{name: "unknown escape", spec: `/da\ta:/in`, err: `unknown escape \t`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVolume(tt.spec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseVolume(%q) = %+v, %v; want error containing %q", tt.spec, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseVolume(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			}
			back, err := ParseVolume(got.String())
			if err != nil || back != got {
				t.Fatalf("ParseVolume(%q.String() = %q) = %+v, %v; want the same spec", tt.spec, got.String(), back, err)
			}
		})
	}
}
