package upgrade

import (
	"fmt"

	"github.com/repoctl/repoctl/internal/rootowner"
)

// checkOwner refuses to write rollout state in root as anyone but its
// owner: a rollouts.db or run lock created by root would keep the service
// user from its own rollouts (see package rootowner). Reading creates
// nothing and needs no check.
func checkOwner(root string) error {
	if err := rootowner.Check(root); err != nil {
		return fmt.Errorf("writing rollout state in %q: %w", root, err)
	}
	return nil
}
