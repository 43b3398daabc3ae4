package repo

import (
	"github.com/repoctl/repoctl/metadata"
)

// extraRecords are the repomd.xml records of dir beyond primary,
// filelists and other: comps groups of its repository, then the
// advisories naming a package it serves. Both come from the store, so a
// republish from the store writes them again.
func (r *Repo) extraRecords(dir string) ([]metadata.ExtraRecord, error) {
	groups, err := r.compsRecords(dir)
	if err != nil {
		return nil, err
	}
	adv, err := r.advisoryRecords(dir)
	if err != nil {
		return nil, err
	}
	return append(groups, adv...), nil
}
