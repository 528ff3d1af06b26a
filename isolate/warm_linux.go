package isolate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// Prewarmed containers. From the second Start of a Config with an ImageID on, each Start has a
// container set up in the background for the next Start of the same Config: the init forked, the
// overlay mounted, /dev, /proc and /sys attached, pivoted, masked, loopback up, everything but
// the caller's commands. That next Start only takes it and reads the setup's reply; the setup, its
// mount syscalls and the RCU grace period of detaching the old root, runs while the test before
// it runs its commands.
//
// The zygote makes them: the parent sends it the setup with a "park" request, and the zygote
// puts it in a new control socket, forks the init, and replies with the socket and the init's
// pidfd; the init prewarms and runs the setup on its own. The parent reads the setup's "ok" only
// when a Start takes the container. Setting one up this way costs the parent one request and one
// reply, and no goroutine of its own: with parked containers made from the pool's inits, the
// parent's side of each (the pool's refill, the setup's round trip, a goroutine waiting on each)
// woke its threads while the previous container ran its commands, and on a 2-CPU machine those
// threads preempted the commands.
//
// The overlay of a parked container is mounted before its Start is called, so its lowers must
// not change in between: ImageID is the caller's promise that they do not. It is a parked
// container's key with everything else its setup depends on (warmKey); a Config that asks for
// host state at Start (volumes, a cgroup, its own upper directory) is never parked.
//
// At most warmKeys keys have a parked container, one each; the least recently started is
// dropped first. A parked container is an init named isorun-ready and a tmpfs, about 1.4 MB; the
// last one of each key is never used and dies with the process (or Shutdown). Like the pool of
// inits, parked containers are dropped when the host's mount table changes, and ISORUN_POOL=0
// turns them off.

// warmKeys is how many distinct Configs keep a parked container.
const warmKeys = 4

var warm struct {
	sync.Mutex
	ready   map[string]*Container
	filling map[string]bool
	recent  []string       // the last warmKeys keys started, least recent first
	gen     uint64         // bumped by Shutdown and host mount changes: fills asked for before are dropped
	busy    sync.WaitGroup // fills, and releases of dropped containers
}

// warmKey is the identity of what a parked container's setup depended on, or "" when cfg may not
// have one.
func warmKey(cfg *Config) string {
	if cfg.ImageID == "" || cfg.Upper != "" || len(cfg.Mounts) > 0 || cfg.Resources != nil ||
		initMode(cfg) != modeZygote || poolSize() == 0 {
		return ""
	}
	return fmt.Sprintf("%q %q %q %d %t %t", cfg.ImageID, cfg.Lowers, cfg.Hostname, cfg.ScratchSize, cfg.Privileged, cfg.Rootless)
}

// takeWarm returns the container parked for key, made the caller's (cfg: its Env and Dir), or nil
// when there is none; either way, unless this is the key's first Start, it has the next one set
// up.
func takeWarm(ctx context.Context, key string, cfg Config) *Container {
	warm.Lock()
	if warm.ready == nil {
		warm.ready, warm.filling = map[string]*Container{}, map[string]bool{}
	}
	c := warm.ready[key]
	delete(warm.ready, key)
	// A Config's first Start parks nothing: a process that starts one container (the CLI) or a
	// Config used once would pay a setup for nobody.
	seen := slices.Contains(warm.recent, key)
	warm.recent = append(slices.DeleteFunc(warm.recent, func(k string) bool { return k == key }), key)
	for len(warm.recent) > warmKeys {
		old := warm.recent[0]
		warm.recent = warm.recent[1:]
		if r := warm.ready[old]; r != nil {
			delete(warm.ready, old)
			dropLocked(r)
		}
	}
	if seen {
		fillLocked(key, cfg)
	}
	warm.Unlock()
	if c == nil {
		return nil
	}
	c.cfg = cfg
	c.parked = false
	// The setup ran while the container was parked: its "ok" is most likely waiting already.
	// The init renames itself isorun-init when it reads the caller's first request.
	if c.awaitReady(ctx, nil) != nil || pollNow(c.pidfd)&unix.POLLIN != 0 {
		warm.Lock()
		dropLocked(c) // its setup failed, or it died while parked
		warm.Unlock()
		return nil
	}
	go c.read()
	return c
}

// dropLocked releases c in the background (Shutdown waits for it).
func dropLocked(c *Container) {
	warm.busy.Add(1)
	go func() {
		defer warm.busy.Done()
		c.Release()
	}()
}

// fillLocked has the zygote set up a container for key in the background, unless one is parked
// or on its way. All it costs this process is a request, and the reply's handling by the
// zygote's reader: the zygote forks the init with the setup already in its control socket.
func fillLocked(key string, cfg Config) {
	if warm.ready[key] != nil || warm.filling[key] {
		return
	}
	c := &Container{id: newID(), cfg: cfg, parked: true, pidfd: -1, jobs: map[string]*Cmd{}, done: make(chan struct{})}
	setup, err := c.setupMessage()
	if err != nil {
		return // the next Start sets up its own, and reports what is wrong
	}
	z, err := getZygote(zygoteKind(&cfg))
	if err != nil {
		return
	}
	warm.filling[key] = true
	gen := warm.gen
	warm.busy.Add(1)
	err = z.park(c.cloneFlags(), setup, func(r zreply) {
		// On the zygote's reader: nothing here may wait.
		defer warm.busy.Done()
		if r.err == nil && (r.pidfd < 0 || r.ctrl < 0) {
			r.err = errors.New("isolate: no pidfd or control socket from the zygote")
		}
		if r.err == nil {
			c.pid, c.pidfd = r.pid, r.pidfd
			f := os.NewFile(uintptr(r.ctrl), "ctrl")
			fc, cerr := net.FileConn(f)
			f.Close()
			r.ctrl = -1
			if cerr != nil {
				r.err = cerr
			} else {
				c.conn = fc.(*net.UnixConn)
			}
		}
		warm.Lock()
		defer warm.Unlock()
		delete(warm.filling, key)
		if r.err != nil {
			r.discard() // the next Start sets up its own, and reports what is wrong
			return
		}
		if gen == warm.gen && slices.Contains(warm.recent, key) {
			warm.ready[key] = c
		} else {
			dropLocked(c)
		}
	})
	if err != nil {
		delete(warm.filling, key)
		warm.busy.Done()
	}
}

// drainWarm releases every parked container, and has the fills under way drop theirs. With wait,
// it returns once those fills are done and everything dropped is gone.
func drainWarm(wait bool) {
	warm.Lock()
	warm.gen++
	for k, c := range warm.ready {
		delete(warm.ready, k)
		dropLocked(c)
	}
	warm.Unlock()
	if wait {
		warm.busy.Wait()
	}
}
