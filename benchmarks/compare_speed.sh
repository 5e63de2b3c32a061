#!/bin/bash
# Side-by-side in one run: NNI peer, ssnas before, ssnas after (this checkout). Prepare "before" with:
#   mkdir -p /tmp/ssnas-before && git archive 7c28d03 | tar -x -C /tmp/ssnas-before
BEFORE=${BEFORE:-/tmp/ssnas-before}
STEPS=${STEPS:-3}; WARM=${WARM:-1}
B="--layers 5 --init-channels 8 --batch-size 32 --order 1 --steps $STEPS --warmup $WARM --json --dataset cifar10 --data-root ${SSNAS_DATA:-../shared/data}"
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
AFTER=$PWD
echo "# start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 10 $PY benchmarks/nni_darts_peer.py --layers 5 --init-channels 8 --batch-size 32 --steps $STEPS --warmup $WARM --data-root ${SSNAS_DATA:-../shared/data} 2>/dev/null | tail -1
for obj in supervised simclr; do
  for which in before after; do
    root=$BEFORE; [ $which = after ] && root=$AFTER
    echo "# $which $obj $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd $root && PYTHONPATH=$root nice -n 10 $PY -m ssnas.cli bench search $B --objective $obj 2>&1 | tail -1)
  done
done
echo "# end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
