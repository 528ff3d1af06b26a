package harness

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// resolveUser sets the uid, gid and groups of commands from a docker-style --user value, with
// names looked up in the container's own /etc/passwd and /etc/group.
func (e *Engine) resolveUser(user string) error {
	if user == "" {
		return nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	uid, gid, err := e.lookup("/etc/passwd", name, true)
	if err != nil {
		return fmt.Errorf("user %q: %w", user, err)
	}
	if hasGroup {
		if gid, _, err = e.lookup("/etc/group", group, false); err != nil {
			return fmt.Errorf("user %q: %w", user, err)
		}
	}
	e.uid, e.gid = uid, gid
	e.groups = []uint32{gid}
	return nil
}

// lookup finds a name (or takes a number) in a passwd or group file: it returns the id and, for
// passwd, the primary gid.
func (e *Engine) lookup(file, name string, passwd bool) (uint32, uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		id := uint32(n)
		gid := id
		if passwd {
			// A numeric uid keeps its passwd entry's group when there is one.
			if _, g, err := e.lookupEntry(file, func(f []string) bool { return f[2] == name }); err == nil {
				gid = g
			}
		}
		return id, gid, nil
	}
	return e.lookupEntry(file, func(f []string) bool { return f[0] == name })
}

func (e *Engine) lookupEntry(file string, match func([]string) bool) (uint32, uint32, error) {
	b, err := e.ReadFile(file)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 || !match(f) {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		gid := id
		if len(f) >= 4 {
			if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
				gid = g
			}
		}
		return uint32(id), uint32(gid), nil
	}
	return 0, 0, fmt.Errorf("no such entry in the container's %s", file)
}

// homes memoizes homeFor by image digest and uid: a cached image never changes, and when Start
// asks, before any command has run, the container's /etc/passwd is its image's unless a volume
// covers it. Reading it costs every Start a file opened beneath the container's root.
var homes sync.Map

// homeFor is HOME for the commands' user: from /etc/passwd, else /root for root and / otherwise.
func (e *Engine) homeFor() string {
	uid := strconv.FormatUint(uint64(e.uid), 10)
	key := ""
	if e.res != nil && e.res.Digest != "host" && len(e.cfg.mounts) == 0 {
		key = e.res.Digest + "\x00" + uid
		if h, ok := homes.Load(key); ok {
			return h.(string)
		}
	}
	h := e.readHome(uid)
	if key != "" {
		homes.Store(key, h)
	}
	return h
}

func (e *Engine) readHome(uid string) string {
	if b, err := e.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Split(line, ":"); len(f) >= 6 && f[2] == uid && f[5] != "" {
				return f[5]
			}
		}
	}
	if e.uid == 0 {
		return "/root"
	}
	return "/"
}
