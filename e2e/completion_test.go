package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// completeScript loads a command's bash completion script (bash-completion's
// _get_comp_words_by_ref reduced to what it needs, when that package is
// not installed) and prints what completing the words after the binary
// offers, one per line, as a user's TAB does.
const completeScript = `bin=$1; shift
source <("$bin" completion bash) || exit 1
if ! declare -F _get_comp_words_by_ref >/dev/null; then
	_get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
fi
COMP_WORDS=("$bin" "$@"); COMP_CWORD=$#
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
"__start_${bin##*/}"
printf '%s\n' "${COMPREPLY[@]}"
`

// TestShellCompletion: the script `completion bash` prints, run by bash,
// completes each command's subcommands and flags from the binary itself.
func TestShellCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, tc := range []struct {
		words []string // after the binary; the last is the one completed
		want  string
	}{
		{[]string{"dsclient", ""}, "add bench client completion get help id init node status"},
		{[]string{"dsclient", "--conf=dir", "node", ""}, "admit drain remove"},
		{[]string{"dsclient", "client", "g"}, "grant"},
		{[]string{"dsclient", "add", "file", "--r"}, "--raw-leaves --recursive"},
		{[]string{"dsclient", "completion", ""}, "bash fish powershell zsh"},
		{[]string{"dscfg", ""}, "client cluster completion help"},
		{[]string{"dscfg", "cluster", "--cluster-"}, "--cluster-node-number"},
		{[]string{"dscluster", "--boot"}, "--bootstrapper"},
		{[]string{"dscluster", "--conf=dir", "--i"}, "--identity"},
	} {
		r := run(t, nil, bash, append([]string{"-c", completeScript, "complete", bin(t, tc.words[0])}, tc.words[1:]...)...)
		if got := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || got != tc.want {
			t.Errorf("%s TAB: %q, want %q\n%s", strings.Join(tc.words, " "), got, tc.want, r)
		}
	}
}
