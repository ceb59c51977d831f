"""cil's methods, classification losses and plugins, declared by name.

One module per method or plugin; each cites the equations of its paper it implements. Importing
this package only declares them (name, module, one-line summary): a module, with torch and Avalanche,
is imported when its component is first looked up, so ``cil list`` and ``cil --help`` stay fast.
"""

from cil.registry import declare_components

declare_components(
    __name__,
    [
        ("method", "finetune", "finetune", "train on each step's data with the classification loss only"),
        (
            "method",
            "il-baseline",
            "il_baseline",
            "classification loss + logit distillation weighted by rho = N_{t-1}/N_t (Jodelet et al., Eq. 1-2)",
        ),
        (
            "method",
            "lucir",
            "lucir",
            "LUCIR: cosine classifier, less-forget constraint, inter-class margin ranking (Hou et al. 2019)",
        ),
        ("method", "ncm", "ncm", "nearest class mean of normalised features, extractor frozen after the base step"),
        (
            "method",
            "podnet",
            "podnet",
            "PODNet: POD-spatial + POD-flat distillation, local similarity classifier (Douillard et al. 2020)",
        ),
        ("method", "slda", "slda", "streaming LDA on features frozen after the base step (Hayes and Kanan 2020)"),
        (
            "method",
            "icarl",
            "icarl",
            "iCaRL's distillation: sigmoid BCE of old classes' outputs against the previous model's (Rebuffi et al.)",
        ),
        (
            "method",
            "task-wise-kd",
            "task_distillation",
            "distillation of each old step's logits with its own softmax (EEIL, Castro et al.; SS-IL, Ahn et al.)",
        ),
        ("loss", "bsce", "bsce", "Balanced Softmax cross-entropy, lambda = class counts (Jodelet et al., Eq. 3-5)"),
        (
            "loss",
            "icarl-bce",
            "icarl",
            "iCaRL's classification: sigmoid BCE of the new classes' outputs, one-hot targets (Rebuffi et al.)",
        ),
        ("loss", "ce", "ce", "standard softmax cross-entropy"),
        (
            "loss",
            "loss-rescaling",
            "rebalancing",
            "CE with each sample weighted by N / (C n_y), inverse to its class count (Jodelet et al., Table 6)",
        ),
        (
            "loss",
            "meta-bsce",
            "meta_bsce",
            "Meta Balanced Softmax CE, alpha of Eq. 5 learned on a balanced validation set (Jodelet et al., Alg. 1)",
        ),
        ("loss", "nca", "nca", "PODNet's NCA loss with margin on the LSC similarities (Douillard et al. 2020)"),
        (
            "loss",
            "relaxed-bsce",
            "relaxed_bsce",
            "Relaxed Balanced Softmax CE, lambda = epsilon for old classes (Jodelet et al., Eq. 6)",
        ),
        (
            "loss",
            "separated-softmax",
            "rebalancing",
            "separated softmax over old and over new classes (SS-IL, Ahn et al. 2021; Jodelet et al., Table 6)",
        ),
        (
            "plugin",
            "balanced-finetuning",
            "balanced_finetuning",
            "finetune on a class-balanced set of exemplars after each incremental step (classifier only by default)",
        ),
        (
            "plugin",
            "class-oversampling",
            "rebalancing",
            "every seen class equally likely in each mini-batch, drawn with replacement (Jodelet et al., Table 6)",
        ),
        (
            "plugin",
            "drw",
            "drw",
            "deferred re-weighting: effective-number class weights for the last 20% of each step's epochs (Cao et al.)",
        ),
        (
            "plugin",
            "gala",
            "gala",
            "gradient-aware logit adjustment from accumulated gradients, optional re-balancing (Zhang et al.)",
        ),
        (
            "plugin",
            "gbg",
            "gbg",
            "gradient-balanced grouping: classes grouped by gradient similarity, MGDA over group losses (GBG paper)",
        ),
        (
            "plugin",
            "lws",
            "lws",
            "learnable weight scaling: a class-balanced second stage after each step (Liu et al. 2022, LT-CIL)",
        ),
        (
            "plugin",
            "memory-oversampling",
            "rebalancing",
            "mini-batches half new-class samples, half exemplars (Jodelet et al., Table 6)",
        ),
        (
            "plugin",
            "mfw",
            "mfw",
            "Major Feature Weakening: mix major classes' intermediate features with others' (Ye et al., Alg. 1)",
        ),
        ("plugin", "nme", "nme", "evaluate by nearest mean of exemplars instead of the classifier (iCaRL)"),
        (
            "plugin",
            "augmented-copies",
            "augmented_copies",
            "every training image several times per epoch, augmented anew each time (EEIL's 12 copies)",
        ),
        (
            "plugin",
            "bic-bias-layer",
            "bic_bias_layer",
            "BiC's bias correction: alpha, beta on the new classes' logits, learned on held-out data (Wu et al.)",
        ),
        (
            "plugin",
            "ratio-preserving-batches",
            "rebalancing",
            "SS-IL's mini-batches: a fixed number of replayed exemplars in each (Ahn et al. 2021)",
        ),
        (
            "plugin",
            "weight-aligning",
            "weight_aligning",
            "WA: new classes' weight norms rescaled to the old ones' mean, weights clipped at 0 (Zhao et al. 2020)",
        ),
    ],
)
