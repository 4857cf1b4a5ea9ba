"""anomaly_edu: the small package behind the anomaly-edu course.

The lectures' concepts are the top-level modules, in the order the lectures
teach them (each names its lecture in ``__lecture__``):

- ``profiles``  : the quick and full settings (all lectures)
- ``models``    : autoencoders and the Deep SVDD network (Lecture 1)
- ``training``  : one seeded training loop and its batch losses (Lecture 1)
- ``metrics``   : AUROC, F1 at a validation threshold, FPR at a TPR (Lecture 1); pixel AUROC, AU-PRO (Lecture 6)
- ``detectors`` : AE, DAE, OCSVM, Deep SVDD, the mean image and PCA with ``fit`` / ``anomaly_score`` (Lecture 1)
- ``viz``       : plotly figures and a threshold slider (Lecture 1)
- ``attacks``   : FGSM, PGD and a sparse attack (Lectures 2 and 3)
- ``adversarial_training``: adversarial training and robust accuracy (Lecture 3)
- ``arae``      : the latent attack, the ARAE loss and detector, the union of perturbations (Lecture 4)
- ``saliency``  : occlusion saliency maps (Lecture 4)
- ``puzzles``   : tiles, permutations and their inverses, colour removal (Lecture 5)
- ``shortcut``  : the seam shortcut of a puzzle, measured, and the perturbation that removes it (Lecture 5)
- ``puzzle_ae`` : the U-Net, the Puzzle-AE losses and detector, scoring over permutations (Lecture 5)
- ``anomaly_maps``: per-pixel anomaly maps, the AE with L2 or SSIM loss (Lecture 6)
- ``geometric`` : the 8 symmetries of the square, the transformation classifier, GT (Lecture 6)
- ``score_attacks``: attacks on a detector's score at test time (Lecture 7)

Three subpackages hold the rest:

- ``data``        : the data root, MNIST-like loaders and one-class splits, COIL-100 (Lecture 1), medical
  images (Lecture 5), MVTec AD and the magnetic tiles (Lecture 6), archives and safe file writes
- ``experiments`` : the method registry, the talk's tables, running and resuming them, reports,
  provenance, sweeps, trained models, and the command line
- ``grading``     : the exercises' checks, one module per exercise

The library never imports ``experiments`` or ``grading`` (tests/test_package_shape.py).
"""

__version__ = "0.1.0"
