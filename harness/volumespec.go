package harness

import (
	"fmt"
	"path"
	"strings"
)

// VolumeSpec is a volume written as on a command line, `HOST:CTR[:ro]`: the CLI's -v and the
// testscript `container -v`. Parse it with ParseVolume; turn it into an Option with Option.
type VolumeSpec struct {
	Host      string // host path (a directory or a file), as written: relative paths are the caller's to resolve
	Container string // absolute path inside the container
	ReadOnly  bool
}

// ParseVolume parses `HOST:CTR`, `HOST:CTR:ro` or `HOST:CTR:rw`. A colon, a space or a
// backslash inside a path is written with a backslash before it (`/data\:2024:/in`), so any
// path can be named; spaces need no escape when the shell already keeps the word whole.
// Errors name the spec: `bad volume spec "x": ...`.
func ParseVolume(spec string) (VolumeSpec, error) {
	bad := func(format string, a ...any) (VolumeSpec, error) {
		return VolumeSpec{}, fmt.Errorf("bad volume spec %q: %s", spec, fmt.Sprintf(format, a...))
	}
	var fields []string
	var cur strings.Builder
	for i := 0; i < len(spec); i++ {
		switch c := spec[i]; c {
		case '\\':
			if i+1 == len(spec) {
				return bad("trailing backslash (escape a backslash as \\\\)")
			}
			i++
			switch n := spec[i]; n {
			case ':', ' ', '\\':
				cur.WriteByte(n)
			default:
				return bad("unknown escape \\%c (only \\:, \\<space> and \\\\ are escapes)", n)
			}
		case ':':
			fields = append(fields, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	fields = append(fields, cur.String())
	var v VolumeSpec
	switch len(fields) {
	case 1:
		return bad("want HOST:CTR[:ro]")
	case 2:
	case 3:
		switch fields[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return bad("mode %q: want ro or rw (a colon in a path is written \\:)", fields[2])
		}
	default:
		return bad("%d fields: want HOST:CTR[:ro] (a colon in a path is written \\:)", len(fields))
	}
	v.Host, v.Container = fields[0], fields[1]
	switch {
	case v.Host == "":
		return bad("empty host path")
	case v.Container == "":
		return bad("empty container path")
	case !path.IsAbs(v.Container):
		return bad("container path %q is not absolute", v.Container)
	case path.Clean(v.Container) == "/":
		return bad("cannot mount over the container's root")
	}
	return v, nil
}

// Option is the WithVolume option of the spec.
func (v VolumeSpec) Option() Option { return WithVolume(v.Host, v.Container, v.ReadOnly) }

// String writes the spec back in the form ParseVolume reads, escaping what needs it.
func (v VolumeSpec) String() string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	s := esc.Replace(v.Host) + ":" + esc.Replace(v.Container)
	if v.ReadOnly {
		s += ":ro"
	}
	return s
}
