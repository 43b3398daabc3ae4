package upgrade

import (
	"fmt"
	"path/filepath"

	"github.com/repoctl/repoctl/internal/rootowner"
)

// checkOwner refuses to write rollout state as anyone but the owner of the
// root that holds it: a rollouts.db or run lock created by root would keep
// the service user from its own rollouts (see package rootowner). Reading
// creates nothing and needs no check.
func (s *store) checkOwner() error {
	if err := rootowner.Check(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("writing rollout state in %q: %w", filepath.Dir(s.path), err)
	}
	return nil
}
