package repo

import (
	"slices"

	kv "github.com/repoctl/repoctl/repo/store"
)

// advisoriesNaming returns the ids of the advisories of repo that list
// nevra, for Show, in the order the advisory store keeps them. It reads
// inside Show's transaction so the record, its events and its advisories
// are one snapshot.
func advisoriesNaming(tx kv.Tx, repo, nevra string) ([]string, error) {
	var ids []string
	err := eachAdvisory(tx, repo, func(a *Advisory) error {
		if slices.Contains(a.Packages, nevra) {
			ids = append(ids, a.ID)
		}
		return nil
	})
	return ids, err
}
