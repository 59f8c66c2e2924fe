"""One rank of the distributed fit test (tests/test_fit_distributed.py); not a test module.

``run(rank, world, port, out_dir, cache_root, configs)``: for every config (a list of
``TrainConfig.to_dict()``) it runs ``fit(cfg, cache=False)``; for the first it then also runs
``fit(cfg, cache=True, root=cache_root, checkpoint_every=1)`` while recording which files this
rank saved. Everything lands in ``out_dir/rank<RANK>.pt`` (a traceback in ``rank<RANK>.err``).

Also runnable as ``python _fit_dist_worker.py RANK WORLD PORT OUT_DIR CACHE_ROOT CONFIGS_JSON``.
"""

import json
import os
import sys
import traceback

import torch
import torch.distributed as dist


def run(rank, world, port, out_dir, cache_root, configs):
    try:
        torch.set_num_threads(1)
        import nclib.train as train

        saved = []
        real_save = train.loop.atomic_save

        def spy(obj, path):
            saved.append(os.path.basename(str(path)))
            real_save(obj, path)

        train.loop.atomic_save = spy  # the name fit() saves through
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        try:
            runs = []
            for c in configs:
                r = train.fit(train.TrainConfig(**c), cache=False, progress=False)
                runs.append(
                    {
                        "history": r.history.to_dict("list"),
                        "curve": r.curve.to_dict("list"),
                        "state": r.model.state_dict(),
                    }
                )
            cached = train.fit(
                train.TrainConfig(**configs[0]), cache=True, root=cache_root, progress=False, checkpoint_every=1
            )
            dist.barrier()
            result = {
                "runs": runs,
                "saved": saved,
                "cached_history": cached.history.to_dict("list"),
                "cached_state": cached.model.state_dict(),
            }
            torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        finally:
            dist.destroy_process_group()
    except BaseException:
        with open(os.path.join(out_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise


if __name__ == "__main__":
    a = sys.argv
    run(int(a[1]), int(a[2]), int(a[3]), a[4], a[5], json.loads(a[6]))
