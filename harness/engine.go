package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/isorun/isorun/fixtures"
	"github.com/isorun/isorun/isolate"
	"github.com/isorun/isorun/overlay"
)

// Engine is one running container without a test around it: what Container wires (the image
// resolved, the options turned into an isolate.Config, the user, the environment, the diff
// filtered of the harness's own mount points), for programs that have no testing.TB, such as
// the isorun CLI and the testscript commands. Its methods return errors; Release undoes
// everything Start made.
type Engine struct {
	img     fixtures.Image
	res     *fixtures.Resolved // img as the container runs on it: Commit stacks on these lowers
	c       *isolate.Container
	cfg     config
	uid     uint32
	gid     uint32
	groups  []uint32
	env     []string
	keepDir string

	mu        sync.Mutex
	timer     *time.Timer
	timedOut  bool
	released  bool
	onTimeout func() // called (once, without mu) when WithTimeout fires
}

// Start starts a container on img, configured by opts as for Container, and returns it ready.
// ctx bounds the start only. Errors name the image and the step that failed. The caller must
// call Release.
func Start(ctx context.Context, img fixtures.Image, opts ...Option) (*Engine, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if reason, _ := platformPolicy(runtime.GOOS, blocker(cfg.rootless), ""); reason != "" {
		return nil, errors.New(reason)
	}
	return start(ctx, img, cfg, nil)
}

// Supported says whether containers can run here: nil, or why not ("isorun: unsupported on
// darwin", "isorun: containers need root here ...").
func Supported() error {
	if reason := unsupported(); reason != "" {
		return errors.New(reason)
	}
	return nil
}

// start is Start with the options applied and a hook for WithTimeout, which Container turns
// into a test failure.
func start(ctx context.Context, img fixtures.Image, cfg config, onTimeout func()) (*Engine, error) {
	if img == nil {
		return nil, errors.New("nil image (use fixtures.Busybox(), fixtures.Host() or fixtures.Open)")
	}
	if os.Getenv("ISORUN_KEEP") == "1" {
		cfg.keep = true
	}
	e := &Engine{img: img, cfg: cfg, onTimeout: onTimeout}
	res, err := img.Resolve()
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Ref(), err)
	}
	e.res = res
	icfg := isolate.Config{
		Lowers:     res.Lowers,
		Hostname:   cfg.hostname,
		Mounts:     cfg.mounts,
		Privileged: cfg.privileged,
		Rootless:   cfg.rootless,
		Dir:        firstNonEmpty(cfg.dir, res.Config.WorkingDir),
		Resources:  cfg.resources,
	}
	if res.Digest != "host" {
		// Cached images never change (and a root filesystem directory's digest changes when
		// it does): isolate may hand out a container it set up ahead of this Start.
		icfg.ImageID = res.Digest
	}
	if cfg.keep {
		if err := e.makeKeepDir(&icfg); err != nil {
			e.removeKeepDir()
			return nil, fmt.Errorf("ISORUN_KEEP: %w", err)
		}
	}
	c, err := isolate.Start(ctx, icfg)
	if err != nil {
		e.removeKeepDir()
		return nil, fmt.Errorf("start container on image %q: %w", img.Ref(), err)
	}
	e.c = c
	user := firstNonEmpty(cfg.user, res.Config.User)
	if err := errors.Join(e.resolveUser(user), e.checkRootlessUser(user)); err != nil {
		e.Release()
		e.removeKeepDir()
		return nil, fmt.Errorf("container %s: %w", c.ID(), err)
	}
	e.env = mergeEnv(res.Config.Env, cfg.env, e.homeFor())
	if cfg.timeout > 0 {
		e.timer = time.AfterFunc(cfg.timeout, e.timeout)
	}
	return e, nil
}

func (e *Engine) makeKeepDir(icfg *isolate.Config) error {
	dir, err := os.MkdirTemp("", "isorun-keep-")
	if err != nil {
		return err
	}
	e.keepDir = dir
	icfg.Upper, icfg.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{icfg.Upper, icfg.Work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) removeKeepDir() {
	if e.keepDir != "" {
		overlay.Remove(e.keepDir)
		e.keepDir = ""
	}
}

func (e *Engine) timeout() {
	e.mu.Lock()
	if e.released {
		e.mu.Unlock()
		return
	}
	e.timedOut = true
	e.mu.Unlock()
	e.c.Close()
	if e.onTimeout != nil {
		e.onTimeout()
	}
}

// TimedOut says whether WithTimeout's deadline passed and killed the container.
func (e *Engine) TimedOut() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.timedOut
}

// ID names the container in messages; it is also its default hostname.
func (e *Engine) ID() string { return e.c.ID() }

// Image is the image the container started from.
func (e *Engine) Image() fixtures.Image { return e.img }

// Env is the environment commands get: the image's, then WithEnv's, with PATH and HOME.
func (e *Engine) Env() []string { return append([]string(nil), e.env...) }

// KeepDir is where the container's upper layer is kept (WithKeep, ISORUN_KEEP=1), or "".
func (e *Engine) KeepDir() string { return e.keepDir }

// Container is the underlying isolate container.
func (e *Engine) Container() *isolate.Container { return e.c }

// Command returns a command to run in the container, with the container's environment, user
// and working directory.
func (e *Engine) Command(name string, arg ...string) *Cmd {
	cmd := e.c.Command(name, arg...)
	e.prepare(cmd)
	return cmd
}

// CommandContext is Command whose process group is killed when ctx is done.
func (e *Engine) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	cmd := e.c.CommandContext(ctx, name, arg...)
	e.prepare(cmd)
	return cmd
}

func (e *Engine) prepare(cmd *Cmd) {
	cmd.Env = append([]string(nil), e.env...)
	cmd.UID, cmd.GID, cmd.Groups = e.uid, e.gid, e.groups
}

// Diff is the container's changes to the image so far, sorted by path. Mount points made for
// volumes are not changes; nor is anything inside a volume (it is not in the upper layer).
func (e *Engine) Diff() (overlay.Changes, error) {
	ch, err := overlay.Diff(e.c.Upper(), e.c.Lowers())
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", e.c.ID(), err)
	}
	created := map[string]bool{}
	for _, p := range e.c.Created() {
		created[p] = true
	}
	return ch.Filter(func(c overlay.Change) bool { return !(c.Kind == overlay.Added && created[c.Path]) }), nil
}

// Commit returns the container's filesystem as it is now as a new image (see fixtures.Commit),
// usable until this process exits: the image's layers and a copy of the upper layer, without the
// mount points made for volumes and tmpfs mounts (as Diff leaves them out) and, like the upper,
// without their content. Commit while no command is writing; it works after Close too.
func (e *Engine) Commit() (fixtures.Image, error) {
	// The base is the image as it was resolved for this container, not resolved again: its
	// lowers are the ones the upper sits on (an archive replaced since then cannot slip in), and
	// resolving costs nothing, so the commit's cost follows the upper alone.
	base := resolvedImage{ref: e.img.Ref(), res: *e.res}
	img, err := fixtures.Commit(base, e.c.Upper(), fixtures.CommitOmit(e.c.Created()...))
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", e.c.ID(), err)
	}
	return img, nil
}

// resolvedImage is an image already resolved.
type resolvedImage struct {
	ref string
	res fixtures.Resolved
}

func (r resolvedImage) Ref() string { return r.ref }

func (r resolvedImage) Resolve() (*fixtures.Resolved, error) {
	res := r.res
	res.Lowers = slices.Clone(res.Lowers)
	res.Config.Env = slices.Clone(res.Config.Env)
	res.Config.Entrypoint = slices.Clone(res.Config.Entrypoint)
	res.Config.Cmd = slices.Clone(res.Config.Cmd)
	return &res, nil
}

// WriteLayer writes the container's changes as an OCI image layer (a tar with .wh. whiteouts).
func (e *Engine) WriteLayer(w io.Writer) error {
	ch, err := e.Diff()
	if err != nil {
		return err
	}
	if e.c.Rootless() {
		// The container's root is this process's user: the layer records root.
		return overlay.WriteLayerAs(w, e.c.Upper(), ch, overlay.Owner{UID: os.Geteuid(), GID: os.Getegid()})
	}
	return overlay.WriteLayer(w, e.c.Upper(), ch)
}

// Close kills every process of the container; Diff, ReadFile and Commit keep working until
// Release.
func (e *Engine) Close() error { return e.c.Close() }

// Release ends the container and frees everything Start made but a kept directory (WithKeep),
// which KeepDir names. It is idempotent.
func (e *Engine) Release() error {
	e.mu.Lock()
	e.released = true
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
	return e.c.Release()
}
