# shellcheck shell=bash
#
# tracer hooks for SPDK's NVMe-over-TCP tests: source this file after test/nvmf/common.sh.
#
#   source /path/to/tracer/packaging/spdk/tracer.sh
#
# tracer_ping [-n NETNS] PING_ARGS...
#     `ping PING_ARGS...` (inside namespace NETNS with -n). When it fails, runs tracer_diagnose.
#     Returns ping's status: the test fails exactly as it did without tracer. For
#     nvmf_tcp_init's and nvmf_veth_init's connectivity checks:
#         tracer_ping -c 1 "$NVMF_FIRST_TARGET_IP"
#         tracer_ping -n "$NVMF_TARGET_NAMESPACE" -c 1 "$NVMF_INITIATOR_IP"
#
# tracer_diagnose [DIR]
#     `tracer diagnose --report DIR` on the test ports (DIR: $output_dir/tracer by default).
#     Prints its verdict line, its signature and where the report is, each line starting with
#     "tracer: ", on standard error. Returns diagnose's exit code: 0 ok, 10 to 17 a verdict
#     (cable, neighbour, netfilter, route, interface, unknown, mtu, program), 2 tracer could
#     not run. Under `set -e`, call it as `tracer_diagnose || :`.
#
# tracer_watch NAME CMD...
#     Runs CMD under `tracer watch`; when CMD fails, the bundle (report.md, report.json,
#     capture.pcapng, snapshot/) is in $output_dir/tracer-NAME. Returns CMD's exit code. The
#     test run_test names in $output_dir/.run_test_name is recorded in the bundle.
#         run_test nvmf_example tracer_watch nvmf_example "$testdir/nvmf_example.sh" --transport=tcp
#
# The ports, addresses and TCP port are SPDK's when its variables are set (nvmf_tcp_init and
# nvmf_veth_init set them); with none set, tracer finds SPDK's layout (phy, virt or
# virt-legacy) and every pair of it itself:
#     initiator port  TRACER_INITIATOR ([NETNS/]IFNAME), else NVMF_INITIATOR_INTERFACE
#     target port     TRACER_TARGET, else NVMF_TARGET_NAMESPACE/NVMF_TARGET_INTERFACE
#     addresses       NVMF_INITIATOR_IP, NVMF_FIRST_TARGET_IP
#     TCP port        NVMF_PORT
# TRACER names the tracer binary (default: tracer, from PATH). Without it, the functions say so
# and the commands run as they would without tracer. tracer needs root, as SPDK's tests do.

# Fills the caller's array `tracer_args` with the ports, addresses and TCP port.
_tracer_args() {
	local initiator=${TRACER_INITIATOR:-${NVMF_INITIATOR_INTERFACE:-}}
	local target=${TRACER_TARGET:-}
	if [[ -z $target && -n ${NVMF_TARGET_INTERFACE:-} ]]; then
		target=${NVMF_TARGET_NAMESPACE:+$NVMF_TARGET_NAMESPACE/}$NVMF_TARGET_INTERFACE
	fi
	tracer_args=()
	if [[ -n $initiator ]]; then
		tracer_args+=(--initiator "$initiator")
	fi
	if [[ -n $target ]]; then
		tracer_args+=(--target "$target")
	fi
	if [[ -n ${NVMF_PORT:-} ]]; then
		tracer_args+=(--tcp-port "$NVMF_PORT")
	fi
	if [[ -n ${NVMF_INITIATOR_IP:-} ]]; then
		tracer_args+=(--initiator-ip "$NVMF_INITIATOR_IP")
	fi
	if [[ -n ${NVMF_FIRST_TARGET_IP:-} ]]; then
		tracer_args+=(--target-ip "$NVMF_FIRST_TARGET_IP")
	fi
}

# Whether the tracer binary is there; says so when it is not.
_tracer_found() {
	if command -v "${TRACER:-tracer}" > /dev/null; then
		return 0
	fi
	echo "tracer: ${TRACER:-tracer} not found (set TRACER to its path): no diagnosis" >&2
	return 1
}

tracer_diagnose() {
	local dir=${1:-${output_dir:-.}/tracer}
	local -a tracer_args
	local out line verdict="" signature="" rc=0
	_tracer_found || return 2
	_tracer_args
	echo "tracer: diagnosing ${tracer_args[*]}" >&2
	out=$("${TRACER:-tracer}" diagnose "${tracer_args[@]}" --report "$dir") || rc=$?
	while IFS= read -r line; do
		case $line in
			"VERDICT: "*) [[ -n $verdict ]] || verdict=$line ;;
			"  signature: "*) [[ -n $signature ]] || signature=${line#"  signature: "} ;;
		esac
	done <<< "$out"
	if [[ -z $verdict ]]; then
		echo "tracer: diagnose exited with $rc and no verdict (its message is above)" >&2
		return "$rc"
	fi
	echo "tracer: $verdict" >&2
	echo "tracer: signature: $signature" >&2
	echo "tracer: report in $dir/report.md and $dir/report.json" >&2
	return "$rc"
}

tracer_ping() {
	local netns="" rc=0
	if [[ ${1:-} == -n ]]; then
		netns=$2
		shift 2
	fi
	if [[ -n $netns ]]; then
		ip netns exec "$netns" ping "$@" || rc=$?
	else
		ping "$@" || rc=$?
	fi
	if ((rc != 0)); then
		tracer_diagnose "${output_dir:-.}/tracer" || :
	fi
	return "$rc"
}

tracer_watch() {
	local name=$1
	local -a tracer_args
	shift
	if ! _tracer_found; then
		"$@"
		return
	fi
	_tracer_args
	"${TRACER:-tracer}" watch "${tracer_args[@]}" --report "${output_dir:-.}/tracer-$name" \
		--test-tag-file "${output_dir:-.}/.run_test_name" -- "$@"
}
