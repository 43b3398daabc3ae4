// Package upgrade rolls an exact package version out to app hosts over SSH,
// group by group, with health gates between groups, and purges the proxy
// caches last.
//
// It owns the inventory schema (the [upgrade] section of repoctl.toml, or an
// Ansible INI/YAML inventory), the rollout plan (every host, every command,
// in order), the SSH transport (host keys always checked against
// known_hosts), and the rollout state machine, which it keeps behind a
// Store so that a rollout can be inspected, resumed or aborted after the
// process running it was killed. Resume never repeats a host's step that
// was recorded as finished. The default Store is its own bbolt file
// (ROOT/rollouts.db) with flock run locks; repo hands it one on its shared
// store (WithStore) when the root keeps its state in etcd. What the
// records mean (the host-conflict rule, aborts) is decided here, so every
// Store behaves alike; upgrade/statetest checks that they do.
//
// It is NOT a package repository: it imports nothing of repo, sign or
// metadata. Whoever moves a package between channels (cmd/repoctl's promote)
// hands it the promoted and previous NEVRA (or, for a multi-arch build, one
// Build per arch, and each host installs the one of its arch: from the
// inventory's arch, or asked over SSH by the plan's "probe arch" phase), an
// event recorder for the audit log and a callback that restores the
// channel on rollback.
package upgrade
