"""Train MiniLM + GLOT for a few steps with sentence-transformers' trainer; save GLOT's state dict.

Run by ``tests/environment/test_distributed.py`` once as a plain process and once under
``torchrun --nproc_per_node 2`` (gloo, CPU) with the per-device batch halved, so both runs take the same
optimisation steps over the same global batches:

    python tests/environment/ddp_train_script.py --out single.pt --per-device-batch 8
    torchrun --nproc_per_node 2 tests/environment/ddp_train_script.py --out ddp.pt --per-device-batch 4

Determinism: a fixed seed builds the same initial GLOT in every process, GLOT's dropout is 0, the backbone
is frozen (eval mode, no dropout) and the loss (``CosineSimilarityLoss``) is a per-pair mean, so averaging
the two ranks' gradients (DDP) equals the gradient of the whole global batch. The trainer's default batch
sampler shuffles with a generator seeded by ``args.seed``: the permutation does not depend on the batch
size, and accelerate hands rank ``r`` every ``world_size``-th per-device batch, so the two ranks together see
exactly the single process's batch at every step.

The default optimiser is plain SGD: Adam divides each gradient by its own running magnitude, so a parameter
whose exact gradient is zero (the readout scorer's last bias: the per-sentence softmax ignores a constant
shift) gets an update of +-lr from float rounding noise, whose sign can differ between the two runs.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where rank 0 saves GLOT's state dict (torch.save)")
    parser.add_argument("--per-device-batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=24, help="STS-B training pairs used")
    parser.add_argument("--backbone", default=None, help="backbone folder (default: the offline MiniLM)")
    parser.add_argument("--optim", default="sgd", help="trainer optimizer (default sgd; see the module doc)")
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--output-dir", default=None, help="trainer output_dir (default: next to --out)")
    args = parser.parse_args()

    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

    import glot_st

    CosineSimilarityLoss = losses.CosineSimilarityLoss

    from glot_st.resources import minilm_path
    from glot_st.train.data import load_split
    from glot_st.train.st_trainer import prepare_for_st_trainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = glot_st.from_backbone(
        args.backbone or minilm_path(), max_seq_length=24, device="cpu", hidden_dim=16, num_layers=2, dropout=0.0
    )
    prepare_for_st_trainer(model)
    initial = {name: value.detach().clone() for name, value in model[1].state_dict().items()}

    split = load_split("stsb", "train", limit=args.rows)
    dataset = Dataset.from_dict(
        {"sentence1": split.texts_a, "sentence2": split.texts_b, "score": [s / 5.0 for s in split.labels]}
    )
    training_args = SentenceTransformerTrainingArguments(
        output_dir=args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=args.per_device_batch,
        learning_rate=args.lr,
        optim=args.optim,
        warmup_steps=0,
        seed=0,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,  # CPU processes talk over gloo
        # Every GLOT parameter takes part in the loss; the frozen backbone has no gradients, so DDP does not
        # track it at all. No search for unused parameters is needed.
        ddp_find_unused_parameters=False,
        dataloader_drop_last=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=dataset, loss=CosineSimilarityLoss(model)
        )
        trainer.train()
    if trainer.is_world_process_zero():
        state = {name: value.detach().cpu().clone() for name, value in model[1].state_dict().items()}
        torch.save(
            {"state_dict": state, "initial": initial, "world_size": trainer.args.world_size,
             "steps": trainer.state.global_step},
            args.out,
        )
    if torch.distributed.is_initialized():
        # every rank leaves together and closes the gloo group itself: a rank that exits while its peer still
        # tears down the group can abort ("terminate called without an active exception")
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
