"""anomaly_edu: the small package behind the anomaly-edu course.

Modules follow the lectures in order:

- ``profiles``  : the quick and full settings (all lectures)
- ``data``      : data root, MNIST-like loaders, one-class splits (Lecture 1), COIL-100 (Lecture 4)
- ``models``    : autoencoders and the Deep SVDD network (Lecture 1)
- ``training``  : one seeded training loop and its batch losses (Lecture 1)
- ``metrics``   : AUROC, F1 at a validation threshold, FPR at a TPR (Lecture 1); pixel AUROC, AU-PRO (Lecture 6)
- ``results``   : provenance, safe writes and the stored results files (Lecture 1)
- ``detectors`` : AE, DAE, OCSVM and Deep SVDD with ``fit`` / ``score`` (Lecture 1)
- ``viz``       : plotly figures and a threshold slider (Lecture 1)
- ``attacks``   : FGSM, PGD and a sparse attack (Lectures 2 and 3)
- ``robust``    : adversarial training and robust accuracy (Lecture 3)
- ``arae``      : the latent attack, the ARAE loss and detector, the union of perturbations (Lecture 4)
- ``saliency``  : occlusion saliency maps (Lecture 4)
- ``batched``   : the one-class autoencoders of a table trained side by side (Lecture 4)
- ``puzzles``   : tiles, permutations and their inverses, colour removal (Lecture 5)
- ``shortcut``  : the seam shortcut of a puzzle, measured, and the perturbation that removes it (Lecture 5)
- ``puzzle_ae`` : the U-Net, the Puzzle-AE losses and detector, scoring over permutations (Lecture 5)
- ``medical``   : head CT and folder-per-label medical images, the medical split (Lecture 5)
- ``mvtec``     : the MVTec AD layout: loader, split, checksum, safe extraction, download (Lecture 6)
- ``magnetic_tile``: the magnetic-tile defect set, its loader and split (Lecture 6)
- ``anomaly_maps``: per-pixel anomaly maps, the AE with L2 or SSIM loss (Lecture 6)
- ``geometric`` : the 8 symmetries of the square, the transformation classifier, GT (Lecture 6)
- ``stress``    : attacks on a detector's score at test time (Lecture 7)
- ``methods``   : the registry of every detector by name (Lecture 1, rows from Lectures 4, 5 and 6)
- ``checks``    : automatic feedback for the exercises
- ``reproduce`` : the command that reproduces the talk's tables (Lectures 1, 4, 5 and 6)
- ``sweep``     : many small runs (seeds, budgets, settings): resumable, in shards (Lecture 7)
- ``trained``   : trained models shipped with the course: safetensors, a manifest, checked loading (Lecture 1)
"""

__version__ = "0.1.0"
