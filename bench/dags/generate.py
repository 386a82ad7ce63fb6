"""Write the DAG files of the ``dag`` workload from wfcommons's recipes (pip install -e '.[bench]').

python bench/dags/generate.py                      # Montage, Epigenomics, Cycles at ~1,000 and ~5,000 tasks
python bench/dags/generate.py --recipes montage --sizes 200 --seed 3

Each file is ``{"name", "source", "parents"}``: node i's parents by index, nodes in topological order (see
bench/dag.py). A fixed random seed makes the files the same from one run to the next.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RECIPES = ("montage", "epigenomics", "cycles")
SIZES = (1000, 5000)


def generate(recipe: str, size: int, seed: int) -> dict[str, Any]:
    import networkx as nx
    import numpy as np
    from wfcommons import WorkflowGenerator
    from wfcommons.wfchef import recipes

    random.seed(seed)
    np.random.seed(seed)
    cls = getattr(recipes, recipe.capitalize() + "Recipe")
    graph = WorkflowGenerator(cls.from_num_tasks(size)).build_workflow()
    order = list(nx.lexicographical_topological_sort(graph))
    index = {node: i for i, node in enumerate(order)}
    parents = [sorted(index[p] for p in graph.predecessors(node)) for node in order]
    import wfcommons

    version = getattr(wfcommons, "__version__", "?")
    return {
        "name": f"{recipe}-{size}",
        "source": f"wfcommons {version} {cls.__name__}.from_num_tasks({size}), seed {seed}",
        "parents": parents,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated wfcommons recipes")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated task counts")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    for recipe in args.recipes.split(","):
        for size in map(int, args.sizes.split(",")):
            dag = generate(recipe, size, args.seed)
            path = args.out / f"{dag['name']}.json"
            path.write_text(json.dumps(dag, separators=(",", ":")) + "\n")
            edges = sum(map(len, dag["parents"]))
            print(f"{path}: {len(dag['parents'])} nodes, {edges} edges, {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
