"""The ``posediff`` command line.

    posediff prior fit ANNOTATIONS --out PRIOR.safetensors   fit a keypoint-completion prior
"""

from __future__ import annotations

import argparse
import sys


def _prior_fit(args: argparse.Namespace) -> int:
    from .data import load_person_arrays
    from .diffusion.completion import GaussianPosePrior
    from .skeletons import get_skeleton

    skeleton = get_skeleton(args.skeleton)
    persons = load_person_arrays(args.annotations, num_keypoints=skeleton.num_joints)
    prior = GaussianPosePrior.fit(
        persons.keypoints, persons.boxes,
        normalization=args.normalization,
        min_visible=args.min_visible,
        flip_index=None if args.no_flip else skeleton.flip_index,
        condition_on_aspect=not args.no_aspect,
        meta=dict(skeleton=skeleton.name, source=str(args.annotations),
                  command="posediff " + " ".join(sys.argv[1:]) if args.record_command else None),
    )
    prior.save(args.out)
    print(f"fitted on {prior.meta['num_persons']} persons of {args.annotations} -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posediff", description="diffusion-based human pose estimation")
    sub = parser.add_subparsers(dest="command", required=True)

    prior = sub.add_parser("prior", help="keypoint-completion priors (DiffusionRegPose Eq. 9-12)")
    prior_sub = prior.add_subparsers(dest="prior_command", required=True)
    fit = prior_sub.add_parser("fit", help="fit a Gaussian pose prior to a COCO-format keypoint file")
    fit.add_argument("annotations", help="COCO-format keypoint JSON")
    fit.add_argument("--out", required=True, help="where to write the prior (.safetensors)")
    fit.add_argument("--skeleton", default="coco17", help="coco17 | crowdpose14 (default coco17)")
    fit.add_argument("--normalization", default="box", choices=["box", "box_isotropic"])
    fit.add_argument("--min-visible", type=int, default=None,
                     help="use persons with at least this many labelled joints (default: all of them, "
                          "i.e. fully labelled persons only); partial persons are fitted by EM")
    fit.add_argument("--no-flip", action="store_true", help="do not add mirrored persons")
    fit.add_argument("--no-aspect", action="store_true", help="do not condition on the box aspect ratio")
    fit.add_argument("--record-command", action="store_true", help="store this command line in the prior")
    fit.set_defaults(func=_prior_fit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
