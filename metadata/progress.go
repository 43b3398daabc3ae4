package metadata

// Progress receives reports from long operations (CreateRepo, Publish).
// Library code never prints; the command line turns these calls into a
// progress bar or log lines. Implementations must be safe for concurrent
// use: workers report steps from several goroutines.
type Progress interface {
	// Stage starts a named stage ("scan", "read", "compress", "publish")
	// of total steps; total is 0 when unknown. CreateRepo compresses
	// while it reads, so it has no "compress" stage (but for a dry run).
	Stage(name string, total int)
	// Step reports n more steps done in the current stage.
	Step(n int)
	// Notice reports something a person should see now, such as waiting
	// for another writer's lock or a file that was skipped.
	Notice(msg string)
}

// NoProgress discards every report. It is the default.
type NoProgress struct{}

func (NoProgress) Stage(string, int) {}
func (NoProgress) Step(int)          {}
func (NoProgress) Notice(string)     {}
