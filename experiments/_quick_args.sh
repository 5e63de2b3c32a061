# Sourced by experiments/compare_conrec.sh and compare_continual.sh: their shared options and environment.
#   parse_quick_args HELP_LAST_LINE "$@"   (set QUICK, OUT, EPOCHS, SUBSET, SEED defaults before calling)
# --help prints the calling script's header, lines 2 to HELP_LAST_LINE. Afterwards SSNAS names the ssnas command
# (the checkout's venv when there is one) and SSNAS_DATA the data root ($SSNAS_DATA, else ../shared/data).
parse_quick_args() {
  local help_last=$1; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) QUICK=1 ;;
      --out) OUT="$2"; shift ;;
      --epochs) EPOCHS="$2"; shift ;;
      --subset) SUBSET="$2"; shift ;;
      --seed) SEED="$2"; shift ;;
      -h|--help) sed -n "2,${help_last}p" "$0"; exit 0 ;;
      *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
  done
  SSNAS=${SSNAS:-$( [ -x .venv/bin/ssnas ] && echo .venv/bin/ssnas || echo ssnas )}
  if [ -z "${SSNAS_DATA:-}" ] && [ -d ../shared/data/cifar10 ]; then
    SSNAS_DATA=$(cd ../shared/data && pwd)
    export SSNAS_DATA
  fi
}
