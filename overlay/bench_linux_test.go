package overlay

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkDiff carries the claim that Diff's cost follows the upper, not
// the image: the same ten changes over a 1,000-file and a 100,000-file lower
// must cost about the same (the issue asks for at most 1.5x apart).
func BenchmarkDiff(b *testing.B) {
	ovRequireRoot(b)
	for _, files := range []int{1_000, 100_000} {
		lower := b.TempDir()
		ovBenchLower(b, lower, files)
		o := ovMount(b, lower)
		// Ten changes of the usual kinds: content, metadata, new files and a
		// new tree, deletions of a file and of a whole directory.
		ovSh(b, o.Merged, `
			echo changed >> d0000/f0000
			echo changed >> d0001/f0050
			printf 'CONTENT\n' > d0002/f0007
			chmod 600 d0003/f0001
			echo new > d0004/new
			echo new > newfile
			mkdir -p newdir && echo new > newdir/f
			rm d0005/f0002
			rm -rf d0006`)
		o.Unmount(b)
		want, err := Diff(o.Upper, o.Lowers)
		if err != nil {
			b.Fatal(err)
		}
		if len(want) != 10 {
			b.Fatalf("setup made %d changes, want 10:\n%s", len(want), want)
		}
		b.Run(fmt.Sprintf("lower=%d", files), func(b *testing.B) {
			for b.Loop() {
				if _, err := Diff(o.Upper, o.Lowers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ovBenchLower makes n small files in directories of 100.
func ovBenchLower(b *testing.B, root string, n int) {
	b.Helper()
	for i := 0; i < n; i++ {
		dir := fmt.Sprintf("%s/d%04d", root, i/100)
		if i%100 == 0 {
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(fmt.Sprintf("%s/f%04d", dir, i%100), []byte("content\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
