"""ONNX export of a trained run, verified: the exported graph must compute what PyTorch computes.

The training process writes the files (onnx.py: torch); verify.py checks them with onnxruntime and
needs no torch, so during a run it runs in the recorder process. after_the_fact.py is `sweeplab
export`: a checkpoint, on any machine, long after training.
"""
