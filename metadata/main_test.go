package metadata

import (
	"os"
	"testing"
)

// TestMain runs this binary as a helper process when a test started it as
// one, so that no test passes by doing nothing in a normal run.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("REPOCTL_MEASURE") != "":
		helperMeasure()
	case os.Getenv("REPOCTL_HOLD_LOCK") != "":
		helperHoldLock(os.Getenv("REPOCTL_HOLD_LOCK"))
	}
	os.Exit(m.Run())
}
