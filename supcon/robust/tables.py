"""The published ImageNet-C and CIFAR-10-C severity tables, and the measured statistics of the frost photographs.

Read from the reference code (hendrycks/robustness, `ImageNet-C/create_c/make_imagenet_c.py` and
`make_cifar_c.py`); the meaning of each tuple is in `supcon.robust.corrupt`' docstring table.
"""

TABLES = ("imagenet-c", "cifar10-c")
REFERENCE_SIZE = {"imagenet-c": 224, "cifar10-c": 32}
SEVERITIES = (1, 2, 3, 4, 5)

_I, _C = 244, 32  # the elastic tables' multipliers, as published ("244 should have been 224")
SEVERITY_PARAMETERS = {
    "imagenet-c": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": (
            (1, 1.11, 0.01),
            (1, 1.16, 0.01),
            (1, 1.21, 0.02),
            (1, 1.26, 0.02),
            (1, 1.31, 0.03),
        ),
        "snow": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": (
            (_I * 2, _I * 0.7, _I * 0.1),
            (_I * 2, _I * 0.08, _I * 0.2),
            (_I * 0.05, _I * 0.01, _I * 0.02),
            (_I * 0.07, _I * 0.01, _I * 0.02),
            (_I * 0.12, _I * 0.01, _I * 0.02),
        ),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
    },
    "cifar10-c": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": (
            (1, 1.06, 0.01),
            (1, 1.11, 0.01),
            (1, 1.16, 0.01),
            (1, 1.21, 0.01),
            (1, 1.26, 0.01),
        ),
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": (
            (_C * 0, _C * 0, _C * 0.08),
            (_C * 0.05, _C * 0.2, _C * 0.07),
            (_C * 0.08, _C * 0.06, _C * 0.06),
            (_C * 0.1, _C * 0.04, _C * 0.05),
            (_C * 0.1, _C * 0.03, _C * 0.03),
        ),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
    },
}

# Per-channel (R, G, B) mean and within-crop std of the reference's five frost photographs (frost1..5; the
# reference draws randint(5), so frost6 is never used), measured on 200 random crops each: 224-px crops at
# full resolution ('imagenet-c'), 32-px crops after a 0.2x bilinear shrink ('cifar10-c').
FROST_PROFILES = {
    "imagenet-c": (
        ((0.305, 0.581, 0.645), (0.094, 0.056, 0.053)),
        ((0.776, 0.792, 0.829), (0.076, 0.079, 0.082)),
        ((0.775, 0.791, 0.828), (0.077, 0.079, 0.082)),
        ((0.566, 0.625, 0.675), (0.102, 0.102, 0.107)),
        ((0.394, 0.438, 0.485), (0.141, 0.139, 0.136)),
    ),
    "cifar10-c": (
        ((0.300, 0.582, 0.648), (0.062, 0.038, 0.038)),
        ((0.779, 0.797, 0.833), (0.047, 0.049, 0.051)),
        ((0.778, 0.796, 0.832), (0.047, 0.048, 0.051)),
        ((0.561, 0.619, 0.669), (0.055, 0.055, 0.060)),
        ((0.413, 0.457, 0.503), (0.093, 0.091, 0.088)),
    ),
}
