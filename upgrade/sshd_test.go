package upgrade

import (
	"fmt"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/sshtest"
)

// sshLab is internal/sshtest's set of real sshd processes.
type sshLab struct{ *sshtest.Lab }

type sshHost = sshtest.Host

func startSSHLab(t testing.TB, names, addrs []string) *sshLab {
	return &sshLab{sshtest.Start(t, names, addrs)}
}

func freePort(t testing.TB, addr string) int { return sshtest.FreePort(t, addr) }

// config returns an [upgrade] Config for the lab with the hosts split into
// the given group sizes; the remaining hosts are proxies.
func (lab *sshLab) config(groupSizes ...int) *Config {
	user := "root"
	c := &Config{KnownHosts: lab.KnownHosts, IdentityFile: lab.Identity, User: user, Flavor: "el9",
		ConnectTimeout: Duration{5 * time.Second}, CommandTimeout: Duration{60 * time.Second}}
	i := 0
	for gi, n := range groupSizes {
		g := GroupConfig{Name: fmt.Sprintf("group%d", gi+1)}
		for j := 0; j < n; j++ {
			h := lab.Hosts[i]
			g.Hosts = append(g.Hosts, HostConfig{Name: h.Name, Address: h.Address, Port: h.Port})
			i++
		}
		c.Groups = append(c.Groups, g)
	}
	for ; i < len(lab.Hosts); i++ {
		h := lab.Hosts[i]
		c.Proxies = append(c.Proxies, HostConfig{Name: h.Name, Address: h.Address, Port: h.Port})
	}
	return c
}
