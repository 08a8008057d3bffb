// Pinned module, never built: `go mod download` fetches the Prometheus Operator source at
// this version so that tests install its ServiceMonitor and PrometheusRule CRDs from
// example/prometheus-operator-crd/ (see fedcompute.deploy.prometheus_operator_crds).
module fedcompute.io/hack/prometheus-operator

go 1.23.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
