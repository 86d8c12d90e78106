"""Learning-rate schedules, optimizers with the official (TF1) update rules, and weight-decay helpers.

Facts from the official `utils.py` (shared/reference/seed.md §1.3, §1.7):
- Peak LR = base LR × global batch / 256. Linear warmup from 0 over `warmup_epochs`, then a decay from the end
  of warmup to the end of the stage (cosine to 0, staircase exponential, piecewise constant, or none); the LR
  is 0 after the stage ends. Step counts are `int(epochs × steps_per_epoch)` (truncated, as the official casts).
- Optimizers: TF1 `MomentumOptimizer` (plain and Nesterov), TF1 `RMSPropOptimizer`, Adam, and LARS.
- Weight decay is an explicit L2 term `coeff × Σ ||w||²/2` (`tf.nn.l2_loss`) over the decayed variables;
  batch-norm variables are always excluded and biases optionally. With LARS the explicit term is dropped and
  LARS adds `wd × w` to the gradient itself, with the same exclusions.

Every optimizer factory is called by the trainer as `factory(learning_rate=schedule)`. Only `LARS` reads its
`weight_decay` / `exclude_from_weight_decay` attributes; the others never decay (use `weight_decay_loss`).
"""

import math

import gin
import keras
import tensorflow as tf

DECAY_TYPES = ("cosine", "exponential", "piecewise", "constant")
_BN_VARIABLE_NAMES = ("moving_mean", "moving_variance")


class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak_learning_rate`, then a decay that ends (LR 0) after `decay_steps` more steps.

    `step` is the step within the stage. All step counts are whole steps (see `learning_rate_schedule`).
    """

    _CONFIG_KEYS = ("peak_learning_rate", "warmup_steps", "decay_steps", "decay", "decay_rate",
                    "steps_per_decay", "boundary_steps")  # fmt: skip

    def __init__(
        self,
        peak_learning_rate,
        warmup_steps,
        decay_steps,
        decay,
        decay_rate=0.1,
        steps_per_decay=1.0,
        boundary_steps=(),
    ):
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.decay = decay
        self.decay_rate = float(decay_rate)
        self.steps_per_decay = float(steps_per_decay)
        self.boundary_steps = tuple(int(b) for b in boundary_steps)

    def _decayed(self, decay_step):
        """The post-warmup LR at `decay_step` steps after the end of warmup (float64 scalar)."""
        peak = tf.constant(self.peak_learning_rate, tf.float64)
        if self.decay == "cosine":  # tf.train.cosine_decay with alpha 0
            progress = tf.minimum(decay_step, self.decay_steps) / max(self.decay_steps, 1)
            return peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        rate = tf.constant(self.decay_rate, tf.float64)
        if self.decay == "exponential":  # staircase: x decay_rate every steps_per_decay steps
            return peak * tf.pow(rate, tf.floor(decay_step / self.steps_per_decay))
        if self.decay == "piecewise":  # piecewise constant: x decay_rate after each boundary passed
            passed = tf.zeros([], tf.float64)
            for boundary in self.boundary_steps:
                passed += tf.cast(decay_step > boundary, tf.float64)
            return peak * tf.pow(rate, passed)
        return peak  # constant

    def __call__(self, step):
        step = tf.cast(step, tf.float64)
        if self.decay_steps == 0 and self.warmup_steps == 0:
            # an empty stage (official: a constant LR)
            return tf.cast(self.peak_learning_rate, tf.float32)
        decay_step = step - self.warmup_steps
        lr = tf.where(decay_step <= self.decay_steps, self._decayed(decay_step), 0.0)
        if self.warmup_steps > 0:
            warm = self.peak_learning_rate * step / self.warmup_steps
            lr = tf.where(step < self.warmup_steps, warm, lr)
        return tf.cast(lr, tf.float32)

    def get_config(self):
        return {key: getattr(self, key) for key in self._CONFIG_KEYS}


def _validate_schedule(args):
    """Raises ValueError naming the first out-of-range argument of `learning_rate_schedule` (a dict)."""
    if args["decay"] not in DECAY_TYPES:
        raise ValueError(f"decay must be one of {DECAY_TYPES}, got {args['decay']!r}")
    for arg in ("global_batch_size", "steps_per_epoch", "base_batch_size"):
        if not args[arg] > 0:
            raise ValueError(f"{arg} must be > 0, got {args[arg]!r}")
    for arg in ("base_learning_rate", "epochs", "warmup_epochs"):
        if not args[arg] >= 0:
            raise ValueError(f"{arg} must be >= 0, got {args[arg]!r}")
    warmup, epochs, decay = args["warmup_epochs"], args["epochs"], args["decay"]
    if warmup > epochs or (warmup > 0 and warmup == epochs):
        raise ValueError(f"warmup_epochs ({warmup!r}) must be < epochs ({epochs!r})")
    if decay in ("exponential", "piecewise") and not args["decay_rate"] > 0:
        raise ValueError(f"decay_rate must be > 0 for decay={decay!r}, got {args['decay_rate']!r}")
    if decay == "exponential" and not args["epochs_per_decay"] > 0:
        raise ValueError(f"epochs_per_decay must be > 0, got {args['epochs_per_decay']!r}")
    if list(args["boundary_epochs"]) != sorted(args["boundary_epochs"]):
        raise ValueError(f"boundary_epochs must be increasing, got {args['boundary_epochs']!r}")


@gin.register
def learning_rate_schedule(
    base_learning_rate,
    global_batch_size,
    steps_per_epoch,
    epochs,
    warmup_epochs=0.0,
    decay="cosine",
    decay_rate=0.1,
    boundary_epochs=(),
    epochs_per_decay=2.4,
    base_batch_size=256,
):
    """Builds the official warmup + decay schedule for one training stage.

    Args:
        base_learning_rate: LR per `base_batch_size` examples; the peak is `base × global_batch / base_batch`.
        global_batch_size: examples per step over all replicas.
        steps_per_epoch: steps in one epoch, possibly fractional (`num_examples / global_batch_size`).
        epochs: length of the stage in epochs, warmup included.
        warmup_epochs: linear warmup from 0 to the peak over `int(warmup_epochs × steps_per_epoch)` steps.
        decay: 'cosine' (to 0 at the stage end), 'exponential' (staircase), 'piecewise' (constant pieces) or
            'constant'; it runs from the end of warmup to the end of the stage.
        decay_rate: factor per exponential period or per piecewise boundary.
        boundary_epochs: piecewise boundaries, in epochs counted from the end of warmup.
        epochs_per_decay: exponential period in epochs.
        base_batch_size: the batch size `base_learning_rate` refers to (official 256).

    Returns:
        A `WarmupDecaySchedule`: `schedule(step_within_stage) -> float32 LR`, 0 after the stage ends.

    Raises:
        ValueError: on an unknown `decay` or an out-of-range argument.
    """
    _validate_schedule(dict(locals()))  # every argument, by name
    return WarmupDecaySchedule(
        peak_learning_rate=base_learning_rate * global_batch_size / base_batch_size,
        warmup_steps=int(warmup_epochs * steps_per_epoch),
        decay_steps=int((epochs - warmup_epochs) * steps_per_epoch),
        decay=decay,
        decay_rate=decay_rate,
        steps_per_decay=epochs_per_decay * steps_per_epoch,
        boundary_steps=[int(b * steps_per_epoch) for b in boundary_epochs],
    )


def _path(variable):
    return str(getattr(variable, "path", None) or variable.name).split(":")[0].lower()


def is_batch_norm_variable(variable):
    """Whether `variable` belongs to a batch-norm layer, judged by its path.

    True when a path segment contains 'batch_norm'/'batchnorm' (every BN in `supcon.model.resnet` / `supcon.model.heads`,
    and Keras' default 'batch_normalization' names), when a layer segment is 'bn' or 'bn_<n>', or when the
    variable is a moving mean/variance. `batch_norm_variables(model)` is the name-independent alternative.
    """
    *layers, name = _path(variable).split("/")
    return name in _BN_VARIABLE_NAMES or any(
        "batch_norm" in s
        or "batchnorm" in s
        or s == "bn"
        or (s.startswith("bn_") and s[3:].isdigit())
        for s in layers
    )


def batch_norm_variables(model):
    """Every variable (gamma, beta, moving statistics) of every BatchNormalization layer inside `model`."""
    layers = model._flatten_layers(include_self=True, recursive=True)  # Keras 3 layer walk
    return [
        v for lay in layers if isinstance(lay, keras.layers.BatchNormalization) for v in lay.weights
    ]


def _is_bias(variable):
    return _path(variable).split("/")[-1] == "bias"


def weight_decay_exclusion(excluded=(), include_bias=True):
    """A `variable -> bool` predicate: True for BN variables, for `excluded`, and for biases unless included.

    Suitable for `LARS.exclude_from_weight_decay`; the complement of `decayed_variables`' rule.
    """
    excluded_ids = {id(v) for v in excluded}

    def exclude(variable):
        return (
            id(variable) in excluded_ids
            or is_batch_norm_variable(variable)
            or (not include_bias and _is_bias(variable))
        )

    return exclude


def decayed_variables(variables, include_bias=True, excluded=()):
    """The variables that weight decay applies to: not batch norm, not in `excluded`, biases if included.

    Args:
        variables: candidate variables (e.g. `model.trainable_variables`).
        include_bias: whether biases are decayed (official `use_bias_weight_decay`, default True).
        excluded: further variables never decayed (e.g. `batch_norm_variables(model)`, or a whole head whose
            decay is off for this stage); matched by identity.

    Returns:
        A list, in the input order.
    """
    exclude = weight_decay_exclusion(excluded, include_bias)
    return [v for v in variables if not exclude(v)]


def weight_decay_loss(variables, coefficient, include_bias=True, excluded=()):
    """The official explicit L2 term `coefficient × Σ tf.nn.l2_loss(w) = coefficient × Σ ||w||²/2`.

    The sum runs over `decayed_variables(variables, include_bias, excluded)`, so BN variables never count.
    Under `tf.distribute`, every replica computes the full term: divide it by `num_replicas_in_sync` when adding
    it to a per-replica loss whose gradients are summed across replicas.

    Returns:
        A float32 scalar (0 when `coefficient` is 0 or nothing is decayed).
    """
    if not coefficient >= 0:
        raise ValueError(f"coefficient must be >= 0, got {coefficient!r}")
    decayed = decayed_variables(variables, include_bias, excluded)
    if not decayed or coefficient == 0:
        return tf.constant(0.0, tf.float32)
    total = tf.add_n([tf.nn.l2_loss(tf.cast(tf.convert_to_tensor(v), tf.float32)) for v in decayed])
    return tf.cast(coefficient, tf.float32) * total


def _dense(gradient):
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class Momentum(keras.optimizers.Optimizer):
    """TF1 `MomentumOptimizer`: `accum = m·accum + g; var -= lr·accum` (Nesterov: `var -= lr·(g + m·accum)`).

    Unlike Keras' SGD, the accumulator holds unscaled gradients, so a LR change applies to the whole
    accumulated velocity at once (this matters under warmup and step decays).
    """

    def __init__(self, learning_rate, momentum=0.9, nesterov=False, name="momentum", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators = self.add_optimizer_variables(var_list, "accumulator")

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(_dense(gradient), variable.dtype)
        accum = self._accumulators[self._get_variable_index(variable)]
        new_accum = self.momentum * accum + g
        self.assign(accum, new_accum)
        step = g + self.momentum * new_accum if self.nesterov else new_accum
        self.assign_sub(variable, lr * step)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class TF1RMSprop(keras.optimizers.Optimizer):
    """TF1 `RMSPropOptimizer` (uncentred, with momentum).

    `ms = ρ·ms + (1-ρ)·g²; mom = m·mom + lr·g/sqrt(ms + ε); var -= mom`, with `ms` starting at **1** and `mom`
    at 0. Keras' RMSprop also puts ε inside the square root but starts `ms` at 0: for small gradients its first
    steps are ~1.4× larger with the official stage-1 ε = 1.0 and ~30× larger with the stage-2 ε = 0.001.
    """

    def __init__(self, learning_rate, rho=0.9, momentum=0.9, epsilon=1.0, name="rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= rho < 1.0 or not 0.0 <= momentum < 1.0 or not epsilon > 0:
            raise ValueError(
                f"need 0 <= decay < 1, 0 <= momentum < 1, epsilon > 0; got {rho}, {momentum}, {epsilon}"
            )
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._mean_squares = self.add_optimizer_variables(var_list, "rms", initializer="ones")
        self._moments = self.add_optimizer_variables(var_list, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(_dense(gradient), variable.dtype)
        index = self._get_variable_index(variable)
        ms, mom = self._mean_squares[index], self._moments[index]
        new_ms = self.rho * ms + (1.0 - self.rho) * tf.square(g)
        self.assign(ms, new_ms)
        new_mom = self.momentum * mom + lr * g * tf.math.rsqrt(new_ms + self.epsilon)
        self.assign(mom, new_mom)
        self.assign_sub(variable, new_mom)

    def get_config(self):
        config = {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon}
        return {**super().get_config(), **config}


class LARS(keras.optimizers.Optimizer):
    """LARS with classic momentum (You et al. 2017; the official SupCon/SimCLR `LARSOptimizer`).

    For a variable that is not excluded: `g += weight_decay·w`, `trust = eta·||w||/||g||` (1 when either norm
    is 0), `v = momentum·v + lr·trust·g`, `w -= v`. Excluded variables get `v = momentum·v + lr·g` (no decay,
    no adaptation).

    Attributes (the trainer sets them after construction, before the first traced step):
        weight_decay: float decay coefficient added to the gradient (the explicit L2 loss must then be 0).
        exclude_from_weight_decay: a callable `variable -> bool` (True = no decay and no trust ratio), or None
            (nothing excluded). Default: `is_batch_norm_variable` (official: 'batch_normalization' names). It
            is called at trace time with the variables the optimizer was built with (e.g.
            `weight_decay_exclusion(batch_norm_variables(model))`) and must return a Python bool.
    """

    def __init__(
        self,
        learning_rate,
        momentum=0.9,
        eta=0.001,
        weight_decay=0.0,
        exclude_from_weight_decay=is_batch_norm_variable,
        name="lars",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0 or not eta > 0:
            raise ValueError(
                f"need 0 <= momentum < 1 and eta > 0, got momentum={momentum!r}, eta={eta!r}"
            )
        self.momentum, self.eta = float(momentum), float(eta)
        self.weight_decay = float(weight_decay)
        self.exclude_from_weight_decay = exclude_from_weight_decay

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _apply_weight_decay(self, variables):
        """No decoupled decay: LARS adds `weight_decay·w` to the gradient inside `update_step`."""
        del variables

    def _is_excluded(self, variable):
        exclude = self.exclude_from_weight_decay
        if exclude is None:
            return False
        return bool(exclude(self._trainable_variables[self._get_variable_index(variable)]))

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(_dense(gradient), variable.dtype)
        velocity = self._momentums[self._get_variable_index(variable)]
        if not self._is_excluded(variable):
            w = tf.convert_to_tensor(variable)
            if self.weight_decay:
                g = g + tf.cast(self.weight_decay, variable.dtype) * w
            w_norm, g_norm = tf.norm(w), tf.norm(g)
            trust = tf.where(
                (w_norm > 0) & (g_norm > 0), self.eta * tf.math.divide_no_nan(w_norm, g_norm), 1.0
            )
            lr = lr * trust
        new_velocity = self.momentum * velocity + lr * g
        self.assign(velocity, new_velocity)
        self.assign_sub(variable, new_velocity)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "eta": self.eta}


@gin.register
def sgd(learning_rate, momentum=0.9):
    """SGD with TF1 heavy-ball momentum (official MOMENTUM): see `Momentum`."""
    return Momentum(learning_rate, momentum=momentum, nesterov=False, name="sgd")


@gin.register
def nesterov(learning_rate, momentum=0.9):
    """SGD with TF1 Nesterov momentum (official NESTEROV): see `Momentum`."""
    return Momentum(learning_rate, momentum=momentum, nesterov=True, name="nesterov")


@gin.register
def rmsprop(learning_rate, epsilon=1.0, decay=0.9, momentum=0.9):
    """TF1 RMSProp (official RMSPROP; ε 1.0 in stage 1, 0.001 in stage 2): see `TF1RMSprop`."""
    return TF1RMSprop(learning_rate, rho=decay, momentum=momentum, epsilon=epsilon, name="rmsprop")


@gin.register
def adam(learning_rate):
    """Adam with TF1 `AdamOptimizer` defaults (β 0.9/0.999, ε 1e-8; Keras' default ε is 1e-7)."""
    return keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="adam")


@gin.register
def lars(learning_rate, momentum=0.9, eta=0.001):
    """LARS (official stage-1 ImageNet optimizer); set `.weight_decay` / `.exclude_from_weight_decay` after."""
    return LARS(learning_rate, momentum=momentum, eta=eta, name="lars")
