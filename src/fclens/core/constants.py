"""Allowed values of params.yaml choices. No YAML, no science: both params.py and the science
modules import these, so the science never imports params.py."""

NOISE_MODES = ("standard_normal", "feature_stats", "zero", "train_mean")
TREE_MODES = ("chain", "full")
CAM_METHODS = ("gradcam", "gradcampp", "smooth_gradcampp")
INPUT_METHODS = ("saliency", "smoothgrad", "integrated_gradients")  # explain.attributions
MAP_METHODS = CAM_METHODS + INPUT_METHODS  # what faithfulness.methods may compare
OPTIMIZERS = ("adam", "sgd")
AMP_MODES = ("none", "bf16", "fp16")
ENGINES = ("torch", "openvino", "onnxruntime")  # CPU inference engines for extraction
BACKENDS = ("local", "ray")  # where extraction runs
# sparsify: the ways to prune the whole FC matrix (its methods: analysis.sparsify.METHODS)
GLOBAL_PRUNING = ("magnitude", "ald_tail", "contribution")
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++",
                 "smooth_gradcampp": "Smooth Grad-CAM++"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
