"""Image operations behind `supcon.robust.corrupt`: kernels, resampling, sampling and synthetic textures.

Every function works on one float32 image `[H, W, C]` with static H and W (or on a single-channel map
`[H, W]`); random ones take a stateless seed `[2]` int. Kernels and resampling matrices that depend only on
the (static) size and the severity parameters are built in numpy at trace time and applied as TF constants.

Border conventions (named as in scipy / OpenCV, because the reference code used both):
  'nearest'     a a a | a b c d | d d d   (scipy 'nearest', OpenCV BORDER_REPLICATE, ImageMagick 'edge')
  'reflect'     d c b a | a b c d | d c b a   (scipy 'reflect'; TF pad 'SYMMETRIC')
  'reflect101'  d c b | a b c d | c b a   (OpenCV BORDER_REFLECT_101, the OpenCV default; TF pad 'REFLECT')
"""

import math

import numpy as np
import tensorflow as tf

BORDERS = ("nearest", "reflect", "reflect101")


def fold_index(index, size, border):
    """Maps integer indices (numpy or TF) outside [0, size) back inside, by the named border convention."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    lib = tf.math if isinstance(index, tf.Tensor) else np
    if border == "nearest" or size == 1:
        return lib.minimum(lib.maximum(index, 0), size - 1)
    period = 2 * size if border == "reflect" else 2 * size - 2
    index = index % period  # floor modulo in both numpy and TF: in [0, period)
    mirror = (period - 1 - index) if border == "reflect" else (period - index)
    return lib.minimum(index, mirror)


def gaussian_weights(sigma, truncate):
    """scipy.ndimage's 1-D Gaussian: exp(-k^2 / 2 sigma^2) for |k| <= int(truncate * sigma + 0.5), sum 1."""
    radius = int(truncate * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (taps / sigma) ** 2)
    return taps.astype(np.int64), weights / weights.sum()


def gaussian_matrix(size, sigma, truncate=4.0, border="nearest"):
    """The [size, size] matrix of a 1-D Gaussian filter (scipy.ndimage.gaussian_filter1d semantics).

    Kernels longer than the signal fold back repeatedly, as scipy does. sigma <= 0 is the identity.
    """
    if sigma <= 0:
        return np.eye(size, dtype=np.float32)
    taps, weights = gaussian_weights(sigma, truncate)
    rows = np.repeat(np.arange(size), taps.size)  # [size * K]
    cols = fold_index(rows + np.tile(taps, size), size, border)
    matrix = np.zeros((size, size), np.float64)
    np.add.at(matrix, (rows, cols), np.tile(weights, size))
    return matrix.astype(np.float32)


def separable_filter(image, rows_matrix, cols_matrix):
    """out[i, l, c] = sum_jk R[i, j] image[j, k, c] C[l, k]: a separable linear filter as two matmuls."""
    rows_matrix = tf.constant(rows_matrix, tf.float32)  # [H, H]
    cols_matrix = tf.constant(cols_matrix, tf.float32)  # [W, W]
    if image.shape.rank == 2:
        return tf.einsum("ij,jk,lk->il", rows_matrix, image, cols_matrix)
    return tf.einsum("ij,jkc,lk->ilc", rows_matrix, image, cols_matrix)


def gaussian_blur(image, sigma, truncate=4.0, border="nearest"):
    """skimage.filters.gaussian / scipy gaussian_filter over the two spatial axes of [H, W(, C)]."""
    height, width = image.shape[0], image.shape[1]
    return separable_filter(
        image,
        gaussian_matrix(height, sigma, truncate, border),
        gaussian_matrix(width, sigma, truncate, border),
    )


def box_resize_matrix(size_in, size_out):
    """The [size_out, size_in] matrix of PIL's `Image.resize(..., Image.BOX)` along one axis.

    PIL weighs the input pixels whose centres fall inside the output pixel's box (of width
    max(size_in / size_out, 1) input pixels) equally: area averaging when shrinking, nearest-like copying
    when enlarging.
    """
    scale = size_in / size_out
    support = 0.5 * max(scale, 1.0)
    matrix = np.zeros((size_out, size_in), np.float64)
    for out in range(size_out):
        centre = (out + 0.5) * scale
        low, high = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size_in)
        for src in range(low, high):
            offset = (src - centre + 0.5) / max(scale, 1.0)
            matrix[out, src] = 1.0 if -0.5 < offset <= 0.5 else 0.0
        matrix[out] /= matrix[out].sum()
    return matrix.astype(np.float32)


def box_resize(image, height, width):
    """PIL BOX resize of [H, W, C] to [height, width, C] (as two matmuls)."""
    return separable_filter(
        image,
        box_resize_matrix(image.shape[0], height),
        box_resize_matrix(image.shape[1], width),
    )


def cv2_gaussian_kernel(ksize, sigma):
    """OpenCV's getGaussianKernel(ksize, sigma): a normalised 1-D Gaussian of ksize taps."""
    taps = np.arange(ksize) - (ksize - 1) / 2
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def disk_kernel(radius, alias_blur):
    """The defocus kernel of ImageNet-C: a pixel disk of `radius`, normalised, then Gaussian-smoothed.

    As the reference: the disk is {x^2 + y^2 <= r^2} on an integer grid of half-width max(8, r), divided by
    its count, then smoothed inside that grid by OpenCV's GaussianBlur (3x3 taps for r <= 8, 5x5 above,
    sigma = alias_blur, reflect101 border). Rows and columns that are exactly zero are trimmed.
    """
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    smooth = cv2_gaussian_kernel(ksize, alias_blur)
    pad = ksize // 2
    for axis in (0, 1):  # separable correlation with a reflect101 border inside the grid
        padded = np.pad(disk, [(pad, pad) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        disk = sum(
            smooth[t] * np.take(padded, np.arange(t, t + disk.shape[axis]), axis=axis)
            for t in range(ksize)
        )
    keep_rows, keep_cols = np.flatnonzero(disk.any(1)), np.flatnonzero(disk.any(0))
    return disk[keep_rows[0] : keep_rows[-1] + 1, keep_cols[0] : keep_cols[-1] + 1].astype(
        np.float32
    )


def filter2d(image, kernel):
    """OpenCV filter2D (correlation, reflect101 border) of every channel of [H, W, C] with a 2-D kernel."""
    kh, kw = kernel.shape
    channels = image.shape[-1]
    padded = tf.pad(
        image, [[kh // 2, kh - 1 - kh // 2], [kw // 2, kw - 1 - kw // 2], [0, 0]], "REFLECT"
    )
    filters = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)), tf.float32)
    return tf.nn.depthwise_conv2d(padded[None], filters, [1, 1, 1, 1], "VALID")[0]


def motion_blur(image, radius, sigma, angle_degrees):
    """ImageMagick's MotionBlurImage(radius, sigma, angle) on [H, W(, C)] (edge virtual pixels).

    A one-sided line kernel: width = 2 ceil(radius) + 1 taps with weights exp(-i^2 / 2 sigma^2) (sum 1),
    tap i reading the pixel at offset (ceil(i sin a - 0.5), ceil(i cos a - 0.5)) (rows, columns).
    `angle_degrees` may be a tensor (a random angle).
    """
    width = int(2 * math.ceil(radius) + 1)
    weights = np.exp(-(np.arange(width) ** 2) / (2.0 * sigma**2))
    weights /= weights.sum()
    angle = tf.cast(angle_degrees, tf.float32) * (math.pi / 180.0)
    height, cols = image.shape[0], image.shape[1]
    row_index, col_index = tf.range(height), tf.range(cols)
    out = tf.zeros_like(image)
    for tap in range(width):
        dy = tf.cast(tf.math.ceil(tap * tf.sin(angle) - 0.5), tf.int32)
        dx = tf.cast(tf.math.ceil(tap * tf.cos(angle) - 0.5), tf.int32)
        shifted = tf.gather(image, fold_index(row_index + dy, height, "nearest"), axis=0)
        shifted = tf.gather(shifted, fold_index(col_index + dx, cols, "nearest"), axis=1)
        out += float(weights[tap]) * shifted
    return out


def centre_zooms(image, factors):
    """Bilinear zooms about the image centre, one per factor >= 1: [H, W, C] -> [len(factors), H, W, C].

    Output pixel p samples the input at c + (p - c) / z, c the centre ((H - 1) / 2, (W - 1) / 2): the
    continuous form of the reference's `clipped_zoom` (crop the central 1/z, enlarge by z).
    """
    inverse = 1.0 / np.asarray(factors, np.float32)
    low, high = (1.0 - inverse) / 2.0, (1.0 + inverse) / 2.0
    boxes = tf.constant(np.stack([low, low, high, high], axis=1), tf.float32)  # [Z, 4]
    box_index = tf.zeros([len(factors)], tf.int32)
    return tf.image.crop_and_resize(image[None], boxes, box_index, image.shape[:2], "bilinear")


def bilinear_sample(image, rows, cols, border):
    """image [H, W, C] read at fractional (rows, cols) [H', W'] with bilinear weights -> [H', W', C]."""
    height, width = image.shape[0], image.shape[1]
    row0, col0 = tf.floor(rows), tf.floor(cols)
    frac_r, frac_c = (rows - row0)[..., None], (cols - col0)[..., None]
    row0, col0 = tf.cast(row0, tf.int32), tf.cast(col0, tf.int32)

    def read(r, c):
        index = tf.stack([fold_index(r, height, border), fold_index(c, width, border)], axis=-1)
        return tf.gather_nd(image, index)

    top = read(row0, col0) * (1 - frac_c) + read(row0, col0 + 1) * frac_c
    bottom = read(row0 + 1, col0) * (1 - frac_c) + read(row0 + 1, col0 + 1) * frac_c
    return top * (1 - frac_r) + bottom * frac_r


def affine_from_points(source, target):
    """The 2x3 affine map (x, y) -> (x', y') sending the 3 source points [3, 2] to the target points."""
    ones = tf.ones([3, 1], tf.float32)
    solution = tf.linalg.solve(tf.concat([source, ones], axis=1), target)  # [3, 2]: columns x', y'
    return tf.transpose(solution)  # [2, 3]


def glass_shuffle(height, width, max_delta, iterations, seed):
    """The source pixel of every pixel after ImageNet-C's glass-blur "swaps", as flat indices [H * W] (numpy).

    Visiting rows h = H - d ... d + 1 and, within each, columns w = W - d ... d + 1 (both descending), with
    dx and dy uniform integers in [-d, d) (numpy's randint(-d, d)), `iterations` times, the reference runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on a colour image. Those are numpy views, so this copies
    x[h', w'] into x[h, w] and leaves x[h', w'] as it was: not a swap. The published CIFAR-10-C and
    ImageNet-C were made that way, so we copy too, for grey images as well. Sequential, hence numpy.
    """
    rng = np.random.default_rng([int(s) & 0xFFFFFFFF for s in np.ravel(seed)])
    source = list(range(height * width))
    rows = range(height - max_delta, max_delta, -1)
    cols = range(width - max_delta, max_delta, -1)
    steps = iterations * len(rows) * len(cols)
    offsets = rng.integers(-max_delta, max_delta, size=(steps, 2)).tolist()
    step = 0
    for _ in range(iterations):
        for h in rows:
            for w in cols:
                dx, dy = offsets[step]
                step += 1
                source[h * width + w] = source[(h + dy) * width + (w + dx)]
    return np.asarray(source, np.int32)


def plasma_fractal(size, decay, seed):
    """The diamond-square height map of ImageNet-C's fog, [size, size] in [0, 1]; size a power of two.

    Periodic grid; level k adds uniform noise in [-w_k^2, w_k^2] to the mean of the four neighbours, with
    w_0 = 100 and w_{k+1} = w_k / decay (the reference's `wibble * uniform(-wibble, wibble)`).
    """
    if size & (size - 1):
        raise ValueError(f"size must be a power of two, got {size}")
    levels = int(math.log2(size))
    seeds = tf.random.experimental.stateless_split(seed, 3 * max(levels, 1))
    corners, wibble = tf.zeros([1, 1], tf.float32), 100.0
    for level in range(levels):
        n = 2**level

        def noise(k, n=n, wibble=wibble, level=level):
            draw = tf.random.stateless_uniform([n, n], seeds[3 * level + k], -wibble, wibble)
            return wibble * draw

        down, right = tf.roll(corners, -1, 0), tf.roll(corners, -1, 1)
        centres = (corners + down + right + tf.roll(down, -1, 1)) / 4 + noise(
            0
        )  # at (i+1/2, j+1/2)
        across = (centres + tf.roll(centres, 1, 0) + corners + right) / 4 + noise(
            1
        )  # at (i, j+1/2)
        along = (centres + tf.roll(centres, 1, 1) + corners + down) / 4 + noise(2)  # at (i+1/2, j)
        even = tf.reshape(tf.stack([corners, across], axis=-1), [n, 2 * n])
        odd = tf.reshape(tf.stack([along, centres], axis=-1), [n, 2 * n])
        corners = tf.reshape(tf.stack([even, odd], axis=1), [2 * n, 2 * n])
        wibble /= decay
    corners -= tf.reduce_min(corners)
    return corners / tf.reduce_max(corners)


def value_noise(height, width, period, seed):
    """Smooth noise in about [-1, 1]: uniform values on a grid of `period` pixels, bicubically enlarged."""
    grid = (height // period + 3, width // period + 3)
    values = tf.random.stateless_uniform(grid, seed, -1.0, 1.0)[..., None]
    enlarged = tf.image.resize(values, (grid[0] * period, grid[1] * period), "bicubic")
    return enlarged[period : period + height, period : period + width, 0]


def needle_texture(height, width, seed, length, density=0.024):
    """Straight bright needles, [H, W]: round(density * H * W) segments of half-length `length` px, with
    uniform random centres and directions, each pixel they cross counted once per segment (a scatter)."""
    count = max(1, round(density * height * width))
    centre_seed, angle_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    centres = tf.random.stateless_uniform([count, 2], centre_seed) * [
        height,
        width,
    ]  # [N, 2] (row, col)
    angles = tf.random.stateless_uniform([count, 1], angle_seed, 0.0, math.pi)  # [N, 1]
    steps = tf.range(-math.ceil(length), math.ceil(length) + 1, dtype=tf.float32)[None]  # [1, T]
    rows = tf.cast(tf.round(centres[:, :1] + steps * tf.sin(angles)), tf.int32)  # [N, T]
    cols = tf.cast(tf.round(centres[:, 1:] + steps * tf.cos(angles)), tf.int32)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = tf.stack(
        [tf.clip_by_value(rows, 0, height - 1), tf.clip_by_value(cols, 0, width - 1)], -1
    )
    return tf.scatter_nd(
        tf.reshape(index, [-1, 2]), tf.reshape(tf.cast(inside, tf.float32), [-1]), [height, width]
    )


def _standardise(x):
    x = x - tf.reduce_mean(x)
    return x / (tf.math.reduce_std(x) + 1e-6)


def frost_texture(height, width, seed, octaves=6):
    """A synthetic frost layer, zero mean and unit std, [H, W].

    Veins plus needles. Veins: ridged multi-octave value noise, each octave n (period 2^o px, o = 1..octaves)
    contributing 2^(0.4 o) (1 - |n|)^4, bright thin ridges where n changes sign. Needles: `needle_texture`
    with half-length 5% of the short side (11 px at 224, 2 px at 32). Weighted 0.8 : 0.5 (each standardised),
    the grey autocorrelation at lags 1, 2, 4, 8 px is near that of the reference's frost photographs: 0.76,
    0.66, 0.55, 0.42 at 224 px against 0.75, 0.55, 0.45, 0.35 measured on 224-px crops; 0.70, 0.55, 0.40,
    0.25 at 32 px against 0.77, 0.56, 0.41, 0.26 on 32-px crops of the 0.2x-shrunk photographs.
    """
    vein_seed, needle_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    octave_seeds = tf.random.experimental.stateless_split(vein_seed, octaves)
    veins = tf.zeros([height, width], tf.float32)
    for octave in range(1, octaves + 1):
        period = max(1, min(2**octave, max(height, width)))
        ridge = (1.0 - tf.abs(value_noise(height, width, period, octave_seeds[octave - 1]))) ** 4
        veins += 2.0 ** (0.4 * octave) * ridge
    length = max(1.0, round(0.05 * min(height, width)))
    needles = needle_texture(height, width, needle_seed, length)
    return _standardise(0.8 * _standardise(veins) + 0.5 * _standardise(needles))
