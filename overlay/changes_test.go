package overlay

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestKindText(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		text string
	}{
		{Added, "A"},
		{Modified, "C"},
		{Deleted, "D"},
	} {
		if got := c.kind.String(); got != c.text {
			t.Errorf("%d.String() = %q, want %q", int(c.kind), got, c.text)
		}
		b, err := json.Marshal(c.kind)
		if err != nil || string(b) != `"`+c.text+`"` {
			t.Errorf("json.Marshal(%v) = %s, %v", c.kind, b, err)
		}
		var k Kind
		if err := json.Unmarshal(b, &k); err != nil || k != c.kind {
			t.Errorf("json.Unmarshal(%s) = %v, %v", b, k, err)
		}
	}
	if got := Kind(0).String(); got != "Kind(0)" {
		t.Errorf("Kind(0).String() = %q", got)
	}
	if _, err := json.Marshal(Change{Path: "/x"}); err == nil {
		t.Error("marshalling a Change without a Kind succeeded")
	}
	for _, bad := range []string{`"X"`, `"a"`, `""`, `1`} {
		var k Kind
		if err := json.Unmarshal([]byte(bad), &k); err == nil {
			t.Errorf("json.Unmarshal(%s) into Kind succeeded", bad)
		}
	}
}

func TestChangesString(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Changes
		want string
	}{
		{"none", nil, ""},
		{"empty", Changes{}, ""},
		{"one", Changes{{Added, "/x"}}, "A /x\n"},
		{"sorted by path, plain string order like docker", Changes{
			{Deleted, "/b"}, {Added, "/a/b"}, {Modified, "/a"}, {Added, "/a b"},
		}, "C /a\nA /a b\nA /a/b\nD /b\n"},
		{"odd characters printed as they are", Changes{{Added, "/x y,z\nw"}}, "A /x y,z\nw\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.in.String(); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
	in := Changes{{Deleted, "/b"}, {Added, "/a"}}
	_ = in.String()
	if in[0].Path != "/b" {
		t.Error("String sorted its receiver in place")
	}
}

func TestChangesJSON(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Changes
		want string
	}{
		{"nil is an empty list", nil, `[]`},
		{"empty", Changes{}, `[]`},
		{"sorted, exact field names", Changes{{Deleted, "/b"}, {Added, "/a"}},
			`[{"kind":"A","path":"/a"},{"kind":"D","path":"/b"}]`},
		{"escaped", Changes{{Modified, "/x \"y\"\n"}}, `[{"kind":"C","path":"/x \"y\"\n"}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("got %s, want %s", b, c.want)
			}
			var back Changes
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.String() != c.in.String() || back == nil {
				t.Errorf("round trip: %#v", back)
			}
		})
	}
	// Inside a struct, as the CLI's --json output may embed it.
	b, err := json.Marshal(struct{ Diff Changes }{})
	if err != nil || string(b) != `{"Diff":[]}` {
		t.Errorf("nil Changes in a struct = %s, %v", b, err)
	}
	var c Changes
	if err := json.Unmarshal([]byte(`[{"kind":"Q","path":"/x"}]`), &c); err == nil {
		t.Error("bad kind accepted")
	}
}

func TestChangesHelpers(t *testing.T) {
	c := Changes{{Added, "/etc"}, {Modified, "/etc/passwd"}, {Added, "/etcetera"}, {Deleted, "/tmp/x"}, {Added, "/tmp"}}
	for _, tc := range []struct {
		name string
		got  Changes
		want []string
	}{
		{"Under /etc", c.Under("/etc"), []string{"/etc", "/etc/passwd"}},
		{"Under /etc/", c.Under("/etc/"), []string{"/etc", "/etc/passwd"}},
		{"Under /", c.Under("/"), c.Paths()},
		{"Without /tmp", c.Without("/tmp"), []string{"/etc", "/etc/passwd", "/etcetera"}},
		{"Without /tmp /etc", c.Without("/tmp", "/etc"), []string{"/etcetera"}},
		{"Filter deleted", c.Filter(func(ch Change) bool { return ch.Kind == Deleted }), []string{"/tmp/x"}},
		{"Filter none", c.Filter(func(Change) bool { return false }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			if tc.got != nil {
				got = tc.got.Paths()
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := strings.Join(c.Paths(), " "); got != "/etc /etc/passwd /etcetera /tmp/x /tmp" {
		t.Errorf("Paths() = %q", got)
	}
}
