package dropwatch

import (
	"os"
	"path/filepath"
)

// Count counts what waits in the drop-in directory dir and its
// subdirectories down to Depth, as a Watcher sees it: files it will take
// (incoming: regular files, ignored names aside), and directories below
// that depth, which it never looks into (skipped). Subdirectories that are
// drop-in directories of their own (others) are left to be counted with
// those. Symbolic links are not followed.
func Count(dir string, others map[string]bool) (incoming, skipped int) {
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range ents {
			if IgnoredName(e.Name()) {
				continue
			}
			p := filepath.Join(d, e.Name())
			switch {
			case e.IsDir() && others[p]:
			case e.IsDir() && depth < Depth:
				walk(p, depth+1)
			case e.IsDir():
				skipped++
			case e.Type().IsRegular():
				incoming++
			}
		}
	}
	walk(dir, 0)
	return incoming, skipped
}
