// Pinned module: Argo CD's health-script runtime (gopher-lua and gopher-json at the versions
// Argo CD 3.x requires) behind a small command for tests.
module fedcompute.io/hack/argocd-lua

go 1.24.0

require (
	github.com/yuin/gopher-lua v1.1.1
	layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
