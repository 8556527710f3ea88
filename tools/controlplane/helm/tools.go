//go:build tools

// Package tools pins helm; see ../build.sh.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
