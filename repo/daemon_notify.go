package repo

import (
	"net"
	"os"
)

// sdNotify tells systemd about the daemon's state when it runs as a
// Type=notify service (NOTIFY_SOCKET set); otherwise it does nothing. The
// protocol is one datagram of "KEY=value" lines, see sd_notify(3).
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}
