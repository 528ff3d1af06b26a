// Package overlay mounts overlayfs for a container's root and reads the
// container's changes back from the upper layer as an exact diff.
//
// A container's root is image layers as read-only lowers, a per-container
// upper that receives every write, and the merged view the container sees.
// Diff turns the upper into Changes in `docker diff` form, which is what
// tests assert on ("my installer added /etc/foo.conf and changed nothing
// else"); WriteLayer turns the same changes into an OCI layer tar, and
// ApplyLayer applies one onto a directory.
//
// # Goals
//
//   - An exact diff. A copy-up that changed nothing (touch, chmod and back,
//     rewriting the same bytes) is not a change; `rm -rf d; mkdir d` deletes
//     d's old children; a whiteout over nothing is not a deletion. Diff
//     compares content, not timestamps.
//   - Cost that follows the upper. Diff never walks a lower: it looks into
//     the lowers only at paths the upper names, so a ten-file change costs
//     the same over a thousand-file image as over a million-file one.
//   - Nothing left on the host. Open makes the overlay a detached mount (the
//     new mount API: fsopen, fsconfig, fsmount) that is in no mount table
//     until someone attaches it, and Scratch puts upper and work on a
//     detached tmpfs reached through a descriptor. When the processes holding
//     them die, even by SIGKILL, the kernel frees everything.
//   - Any path. Layer paths may hold commas, colons and backslashes (they
//     are escaped), and there may be more lowers than fit in one mount
//     option (each goes in its own "lowerdir+", or by /proc/self/fd/N).
//     What cannot be expressed is an error that says why, never a silently
//     truncated stack.
//
// # Non-goals
//
//   - Processes, namespaces and images: package isolate attaches the mount
//     in the container's mount namespace, package fixtures makes the lowers.
//   - Reading uppers made with redirect_dir or metacopy on (Diff refuses
//     them), or by other overlay implementations (fuse-overlayfs).
//   - A diff of a container that is still writing: Diff reads the upper as it
//     is at that moment.
//
// # Mount options, and why
//
//   - index=off: the inode index binds an upper to the exact lower inodes it
//     was made on and refuses reuse elsewhere; it exists for NFS export and
//     hard-link consistency across copy-up, neither of which a disposable
//     container needs.
//   - metacopy=off: with metacopy a chmod copies up only metadata and leaves
//     the data in the lower, so the upper alone would not hold what changed
//     and could not be diffed or committed.
//   - redirect_dir=off (not with userxattr, where the kernel refuses it and
//     never creates redirects): renaming a lower directory then fails with
//     EXDEV and tools such as mv copy it, so every change is spelled out by
//     name in the upper. A redirect records a rename in an xattr that only
//     the lowers' history can interpret; Diff refuses one rather than
//     report the wrong thing.
//
// The package takes no testing.TB and prints nothing: errors name the
// operation and the path and wrap the cause.
package overlay
