package repo

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// dropResident takes the store's mapped pages out of the process's
// resident set (madvise MADV_DONTNEED on bbolt's read-only shared
// mapping): they stay in the page cache, and a later read maps them
// again from there, so nothing is lost or re-read from disk. Without it
// every page a scan touched (the index at Open reads every record)
// counts in the daemon's RSS until the kernel needs the memory, although
// the daemon reads a few pages a publish after that. Called inside a
// read transaction of tx's DB, so that bbolt cannot remap meanwhile, and
// the range (the file's size as the transaction sees it) lies within the
// mapping: bbolt maps at least the whole file.
func dropResident(tx *bolt.Tx) {
	if tx.Writable() {
		return // its size may count pages it has not written yet
	}
	data, size := tx.DB().Info().Data, tx.Size()
	if data == 0 || size <= 0 {
		return
	}
	// Errors are ignored: the advice only saves memory.
	syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED)
}
