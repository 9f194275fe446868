"""ONNX export of a trained run, verified: the exported graph must compute what PyTorch computes.

The training process writes the files (onnx.py: torch); onnx_check.py checks them with onnxruntime and
needs no torch, so during a run it runs in the recorder process. from_checkpoint.py is `sweeplab
export`: a checkpoint, on any machine, long after training.
"""
