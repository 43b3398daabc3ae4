// Package dropwatch is repoctl's drop-in watcher: it watches drop-in
// directories (and their subdirectories down to Depth levels) through
// inotify, decides when each file is complete (closed after writing,
// renamed into place, or quiet for the settle interval, and never while a
// process has it open for writing), and hands complete files over in
// batches, one batch at a time, retrying with back-off the files a batch
// left in place. Count tells what waits in a directory as a Watcher sees
// it; OpenForWriting is the kernel's word on an open writer.
//
// It is not the ingest pipeline: it never reads, validates, moves or
// rejects a file, and knows nothing of repositories, channels or the
// store. Package repo's daemon composes a Watcher with the pipeline (its
// BatchFunc runs Ingest) and maps drop-in directories to their
// configuration; that is why this package must never import repo.
package dropwatch
