"""`fkd config`: the key reference, or a config file resolved and checked as `fkd cv` checks it, its
model_options included (which is why the command sits here, above fkd.core.config: it builds the model)."""
import json

from fkd.core.config import DEFAULTS, REFERENCE, RULES, add_set_argument, dump_config, load_config, reference_markdown


def add_arguments(parser):
    parser.add_argument("config", nargs="?", help="a config file: print it resolved over the defaults (YAML), "
                                                  "its model_options checked as fkd cv checks them")
    parser.add_argument("--markdown", action="store_true", help="the key reference as docs/configs.md holds it")
    add_set_argument(parser)


def run(args):
    if args.config:
        config = load_config(args.config, sets=args.set)
        from fkd.model.nets import check_model_options  # torch only when a file is checked: the reference stays light

        check_model_options(config)
        print(dump_config(config).rstrip())
    elif args.markdown:
        print(reference_markdown(), end="")
    else:
        width = max(map(len, REFERENCE))
        for key, (_, allowed, doc) in REFERENCE.items():
            print(f"{key:<{width}}  {json.dumps(DEFAULTS[key]):<10} {allowed}\n{'':<{width}}  {doc}")
        print(f"\n{RULES}")
    return 0
