package dropwatch

import "testing"

// TestBatchLimitGrowsWithBacklog: batches take maxBatch files at most
// while the backlog is small, a quarter of a big backlog, and never more
// than 16 × maxBatch or than what waits.
func TestBatchLimitGrowsWithBacklog(t *testing.T) {
	for _, c := range []struct{ backlog, max, want int }{
		{1, 1000, 1}, {999, 1000, 999}, {1000, 1000, 1000}, {3999, 1000, 1000},
		{8000, 1000, 2000}, {100000, 1000, 16000}, {10, 3, 3}, {1000, 3, 48},
	} {
		if got := batchLimit(c.backlog, c.max); got != c.want {
			t.Errorf("batchLimit(%d, %d) = %d, want %d", c.backlog, c.max, got, c.want)
		}
	}
}
