package repo

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"
)

// openConfiguredStore opens [store]'s backend: bbolt in [paths] db, or
// etcd under [store] prefix.
func openConfiguredStore(ctx context.Context, cfg *Config) (*store, error) {
	if cfg.Store.Backend != StoreEtcd {
		return openStore(cfg.Paths.DB)
	}
	db, err := openEtcdKV(ctx, cfg, cfg.Store.Prefix)
	if err != nil {
		return nil, err
	}
	s := cfg.Store
	st, err := initStore(db, fmt.Sprintf("etcd %s%s", s.Endpoints[0], s.Prefix))
	if err != nil {
		return nil, err
	}
	// Daemons sharing the prefix are an HA pair: their writes are gated
	// on the leadership (ha.go). Until a daemon joins, nothing changes.
	st.db = &gatedDB{base: st.db}
	return st, nil
}

// openEtcdKV connects to [store]'s etcd, its keys under prefix.
func openEtcdKV(ctx context.Context, cfg *Config, prefix string) (kv.DB, error) {
	s := cfg.Store
	s.Prefix = prefix
	dial, _ := time.ParseDuration(s.DialTimeout) // checked by storeDefaults
	var tc *tls.Config
	if s.CAFile != "" || s.CertFile != "" {
		var err error
		if tc, err = kv.EtcdTLS(s.CAFile, s.CertFile, s.KeyFile); err != nil {
			return nil, fmt.Errorf("opening the etcd store: %w", err)
		}
	}
	db, err := kv.OpenEtcd(ctx, kv.EtcdOptions{Endpoints: s.Endpoints, Prefix: s.Prefix, DialTimeout: dial,
		TLS: tc, MaxTxnOps: s.MaxTxnOps, MaxRequestBytes: s.MaxRequestBytes})
	if err != nil {
		return nil, fmt.Errorf("opening the store (prefix %q): %w", s.Prefix, err)
	}
	return db, nil
}
