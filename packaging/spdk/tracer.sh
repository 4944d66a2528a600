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
# Which ports: tracer finds SPDK's layout (phy, virt or virt-legacy) and every pair of it
# itself, and takes the addresses configured on them. TRACER_INITIATOR and TRACER_TARGET
# ([NETNS/]IFNAME) name the ports instead (one pair; SPDK's variables below fill the one not
# given). When tracer_diagnose finds no layout, it takes the first pair SPDK's variables name (nvmf_tcp_init and nvmf_veth_init set them: a
# physical node whose NICs are named otherwise than cvl_0_0/cvl_0_1, say):
#     initiator port  NVMF_INITIATOR_INTERFACE
#     target port     NVMF_TARGET_NAMESPACE/NVMF_TARGET_INTERFACE
#     addresses       NVMF_INITIATOR_IP, NVMF_FIRST_TARGET_IP
# The TCP port is NVMF_PORT when set. TRACER_NETNS_ROOT names a namespace standing for the
# host's (tracer's --netns-root: where `tracer lab up --layout` builds a layout).
# TRACER names the tracer binary (default: tracer, from PATH). Without it, the functions say so
# and the commands run as they would without tracer. tracer needs root, as SPDK's tests do.

# Fills the caller's array `tracer_args` with the ports, addresses and TCP port: the ports
# TRACER_INITIATOR and TRACER_TARGET name, the rest of the pair from SPDK's variables; with
# neither of them set, none (tracer finds the layout, in TRACER_NETNS_ROOT when set), unless
# `spdk` asks for the pair SPDK's variables name.
_tracer_args() {
	local initiator=${TRACER_INITIATOR:-}
	local target=${TRACER_TARGET:-}
	tracer_args=()
	if [[ ${1:-} != spdk && -z $initiator && -z $target ]]; then
		if [[ -n ${TRACER_NETNS_ROOT:-} ]]; then
			tracer_args+=(--netns-root "$TRACER_NETNS_ROOT")
		fi
		if [[ -n ${NVMF_PORT:-} ]]; then
			tracer_args+=(--tcp-port "$NVMF_PORT")
		fi
		return
	fi
	initiator=${initiator:-${NVMF_INITIATOR_INTERFACE:-}}
	if [[ -z $target && -n ${NVMF_TARGET_INTERFACE:-} ]]; then
		target=${NVMF_TARGET_NAMESPACE:+$NVMF_TARGET_NAMESPACE/}$NVMF_TARGET_INTERFACE
	fi
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
	local out line verdicts=0 signed=1 rc=0
	_tracer_found || return 2
	_tracer_args
	echo "tracer: diagnosing ${tracer_args[*]}" >&2
	out=$("${TRACER:-tracer}" diagnose "${tracer_args[@]}" --report "$dir") || rc=$?
	# No layout found (exit 2, no verdict): the first pair SPDK's variables name, if any.
	if ((rc == 2)) && [[ $out != *"VERDICT: "* && -n ${NVMF_TARGET_INTERFACE:-} ]]; then
		_tracer_args spdk
		echo "tracer: no layout found; diagnosing ${tracer_args[*]}" >&2
		rc=0
		out=$("${TRACER:-tracer}" diagnose "${tracer_args[@]}" --report "$dir") || rc=$?
	fi
	# Each pair's header (several pairs), verdict and signature.
	while IFS= read -r line; do
		case $line in
			"== pair "*) echo "tracer: $line" >&2 ;;
			"VERDICT: "*)
				echo "tracer: $line" >&2
				verdicts=$((verdicts + 1))
				signed=0
				;;
			"  signature: "*)
				if ((!signed)); then
					echo "tracer: signature: ${line#"  signature: "}" >&2
					signed=1
				fi
				;;
		esac
	done <<< "$out"
	if ((verdicts == 0)); then
		echo "tracer: diagnose exited with $rc and no verdict (its message is above)" >&2
		return "$rc"
	fi
	if ((verdicts > 1)); then
		echo "tracer: reports in $dir/pair-1 to $dir/pair-$verdicts (report.md, report.json)" >&2
	else
		echo "tracer: report in $dir/report.md and $dir/report.json" >&2
	fi
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
