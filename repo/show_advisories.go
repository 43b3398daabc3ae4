package repo

import bolt "go.etcd.io/bbolt"

// advisoriesNaming returns the ids of the advisories of repo that list
// nevra, for Show, in the order the advisory store keeps them. It reads
// inside Show's transaction so the record, its events and its advisories
// are one snapshot.
//
// The advisory store is not part of this tree yet: until it is wired in
// here, no package has advisories.
func advisoriesNaming(tx *bolt.Tx, repo, nevra string) ([]string, error) {
	return nil, nil
}
