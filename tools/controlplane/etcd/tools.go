//go:build tools

// Package tools pins etcd; see ../build.sh.
package tools

import _ "go.etcd.io/etcd/server/v3"
