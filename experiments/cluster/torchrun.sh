#!/usr/bin/env bash
# DDP under torchrun: NPROC_PER_NODE processes on each of NNODES nodes, one `lit-d2l fit` each.
# Start the same command on every node (torchrun's c10d rendezvous pairs them up):
#   NNODES=2 NPROC_PER_NODE=4 RDZV_ENDPOINT=node0:29500 ACCELERATOR=gpu \
#     MLFLOW_TRACKING_URI=http://mlflow.example.org:5000 \
#     bash experiments/cluster/torchrun.sh --config experiments/mlp.yaml --trainer.max_epochs 10
# Lightning finds torchrun's variables (TorchElasticEnvironment); data.batch_size is the global batch.
# Several nodes need a tracking server both reach (a SQLite file is local to one machine).
set -euo pipefail
NNODES=${NNODES:-1}
if [[ $NNODES -gt 1 && ( -z ${RDZV_ENDPOINT:-} || -z ${MLFLOW_TRACKING_URI:-} ) ]]; then
  echo "lit-d2l: error: $NNODES nodes need RDZV_ENDPOINT=HOST:PORT (one node's address, the same on every" \
    "node) and MLFLOW_TRACKING_URI=http://HOST:5000 (a tracking server every node reaches)" >&2
  exit 2
fi
NPROC_PER_NODE=${NPROC_PER_NODE:-2}
RDZV_ENDPOINT=${RDZV_ENDPOINT:-127.0.0.1:29500}
RDZV_ID=${RDZV_ID:-lit-d2l}
ACCELERATOR=${ACCELERATOR:-auto}
PYTHON=${PYTHON:-python}
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///mlruns/mlflow.db}

exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" --nproc-per-node "$NPROC_PER_NODE" \
  --rdzv-backend c10d --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-id "$RDZV_ID" \
  -m lit_d2l fit "$@" \
  --trainer.strategy ddp --trainer.accelerator "$ACCELERATOR" \
  --trainer.num_nodes "$NNODES" --trainer.devices "$NPROC_PER_NODE"
