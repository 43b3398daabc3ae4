package sign

import (
	"context"
	"testing"
)

func TestSignCorpusRpmkeys(t *testing.T) {
	for _, algo := range []string{"rsa4096", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			k := testKey(t, algo)
			_, files := copyCorpus(t)
			s, err := NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.SignFiles(context.Background(), files)
			if err != nil {
				t.Fatal(err)
			}
			db := newRPMDB(t, pubOf(t, k))
			for _, r := range res {
				if r.Err != nil {
					t.Errorf("%s: %v", r.Path, r.Err)
					continue
				}
				t.Logf("%s %s inplace=%v", r.Path, r.Action, r.InPlace)
				db.assertSignedOK(t, r.Path, k)
			}
		})
	}
}
