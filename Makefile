# fkd: every user-facing job is a target here. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FKD    := $(PY) -m fkd

# empty = not set: fkd then uses its own defaults (data/ or /kaggle/input; the config's folds)
DATA    ?=
CONFIG  ?= configs/cpu.yaml
FOLDS   ?=
NAME    ?=
RUNS    ?=
DEVICE  ?=
DEMO    ?= build/demo
PROXY   ?= ../shared/data/proxy
KERNEL  ?= build/kernel
SPLIT   ?= 0
MACHINE ?=
FULL    ?=
SET     ?=
FILE    ?=
MSG     ?=
PHOTOS  ?=
MODEL   ?=
STACK   ?=
VIDEO   ?=
HOLDOUT ?= build/holdout
SPACE   ?=
TRIALS  ?=
STORAGE ?=
STUDY   ?=
CONFIGS ?=
# `make kernel` ships fkd's default members (the best measured ensemble, stacked: fkd kernel's own default)
# unless CONFIGS, or CONFIG for one member, is given on the command line or in the environment
KERNEL_CONFIGS := $(or $(CONFIGS),$(if $(filter command line environment,$(origin CONFIG)),$(CONFIG)))
DATA_ARG := $(if $(DATA),--data-dir $(DATA))
FINISHED_RUNS = $(patsubst %/metrics.json,%,$(wildcard runs/*/metrics.json))

.PHONY: help install test demo data holdout bench eda cv tune submit report kernel push status output lb lb-sync ledger export face calibrate video kaggle-env gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

install: $(VENV)/.installed  ## make the virtual environment and install requirements.txt

test: install  ## run the tests (synthetic data; no Kaggle account, no network)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

demo: install  ## the whole loop on a synthetic folder: cv -> submit -> check -> kernel bundle
	$(FKD) synth --out $(DEMO)/data --train 1200 --test 120 --seed 0 --force
	$(FKD) cv --data-dir $(DEMO)/data --config configs/demo.yaml --name demo --runs-dir $(DEMO)/runs
	$(FKD) submit --data-dir $(DEMO)/data --runs $(DEMO)/runs/demo --name demo --out-dir $(DEMO)/submissions
	$(FKD) check-submission $$(ls -t $(DEMO)/submissions/*-demo.csv | head -1) --lookup $(DEMO)/data/IdLookupTable.csv
	$(FKD) kernel --config configs/demo.yaml --out $(DEMO)/kernel

data: install  ## download the competition into data/ (needs a Kaggle token)
	$(FKD) kaggle download --out $(or $(DATA),data)

holdout: install  ## a local leaderboard: one fold of the training rows kept out as a test set with answers -> $(HOLDOUT)/ (score: fkd check-submission SUB --lookup $(HOLDOUT) --answers $(HOLDOUT)/answers.csv)
	$(FKD) holdout $(DATA_ARG) --out $(HOLDOUT)

bench: install  ## quick figures on the proxy folder (parse, throughput, a short CV, real photos and synthetic scenes vs crops, video, ONNX; about 20 min on 2 cores); FULL=1: every recipe
	$(FKD) bench --data-dir $(PROXY) $(if $(FULL),,--quick)

eda: install  ## plots of the data -> reports/eda/
	$(FKD) eda $(DATA_ARG) --out reports/eda

cv: install  ## K-fold cross-validation: make cv CONFIG=configs/x.yaml [FOLDS=5] [NAME=...] [DEVICE=cpu] [SET="seed=4 epochs=64"]
	$(FKD) cv $(DATA_ARG) --config $(CONFIG) $(if $(FOLDS),--folds $(FOLDS)) $(if $(NAME),--name $(NAME)) \
		$(if $(DEVICE),--device $(DEVICE)) $(foreach s,$(SET),--set $(s))

tune: install  ## recipe search (Optuna): make tune CONFIG=configs/x.yaml SPACE=configs/spaces/x.yaml [TRIALS=20] [FOLDS=0|0,1|all] [STORAGE=postgresql://...] [STUDY=name] [TIMEOUT=minutes]
	$(if $(SPACE),,$(error SPACE is not set: make tune CONFIG=configs/stem-heatmap.yaml SPACE=configs/spaces/stem-heatmap.yaml))
	$(FKD) tune $(DATA_ARG) --config $(CONFIG) --space $(SPACE) $(if $(TRIALS),--trials $(TRIALS)) \
		$(if $(FOLDS),--on-folds $(FOLDS)) $(if $(STORAGE),--storage $(STORAGE)) $(if $(STUDY),--study $(STUDY)) \
		$(if $(TIMEOUT),--timeout $(TIMEOUT)) $(foreach s,$(SET),--set $(s))

submit: install  ## blend runs into a checked submission: make submit RUNS="runs/a runs/b" [STACK=1: a two-stage linear stack, fkd.submit.stack]
	$(if $(RUNS),,$(error RUNS is not set: make submit RUNS="runs/a runs/b" (finished runs here: $(or $(FINISHED_RUNS),none))))
	$(FKD) submit $(DATA_ARG) --runs $(RUNS) $(if $(NAME),--name $(NAME)) $(if $(DEVICE),--device $(DEVICE)) $(if $(STACK),--stack)

report: install  ## plots of finished runs: make report RUNS=runs/a
	$(if $(RUNS),,$(error RUNS is not set: make report RUNS=runs/a (finished runs here: $(or $(FINISHED_RUNS),none))))
	$(FKD) report $(RUNS) $(DATA_ARG)

kernel: install  ## build the single-file Kaggle GPU kernel -> build/kernel/: make kernel [CONFIGS="configs/a.yaml configs/b.yaml" STACK=1] (default: the stem pair, stacked)
	$(FKD) kernel $(foreach c,$(KERNEL_CONFIGS),--config $(c)) $(if $(STACK),--stack) --out $(KERNEL) $(foreach s,$(SET),--set $(s)) $(if $(filter 1,$(SPLIT)),--split) $(if $(MACHINE),--machine-shape $(MACHINE))

push: kernel  ## push the kernel to Kaggle: make push [SPLIT=1] [MACHINE=NvidiaTeslaT4]
	$(FKD) kaggle push --kernel-dir $(KERNEL)

status: install  ## status of the pushed kernel(s)
	$(FKD) kaggle status --kernel-dir $(KERNEL)

output: install  ## download the kernel's runs into runs/
	$(FKD) kaggle output --kernel-dir $(KERNEL) --runs-dir runs

lb: install  ## submit to the leaderboard: make lb FILE=submissions/x.csv MSG="..."
	$(if $(FILE),,$(error FILE is not set: make lb FILE=submissions/x.csv MSG="what changed"))
	$(FKD) kaggle submit --file $(FILE) --message "$(MSG)"

lb-sync: install  ## read public/private scores back into submissions/ledger.csv
	$(FKD) kaggle sync

ledger: install  ## table and plot of LB score against CV score
	$(FKD) ledger

export: install  ## the ensemble of runs as one checked ONNX file: make export RUNS="runs/a runs/b" [MODEL=model.onnx]
	$(if $(RUNS),,$(error RUNS is not set: make export RUNS="runs/a runs/b" (finished runs here: $(or $(FINISHED_RUNS),none))))
	$(FKD) export --runs $(RUNS) --out $(or $(MODEL),model.onnx) $(DATA_ARG)

face: install  ## keypoints on photos: make face PHOTOS="a.jpg b.png" RUNS=runs/a (or MODEL=model.onnx)
	$(if $(PHOTOS),,$(error PHOTOS is not set: make face PHOTOS="a.jpg b.png" RUNS=runs/a))
	$(if $(RUNS)$(MODEL),,$(error RUNS is not set: make face PHOTOS="a.jpg" RUNS=runs/a (finished runs here: $(or $(FINISHED_RUNS),none)), or MODEL=model.onnx))
	$(FKD) face $(PHOTOS) $(if $(MODEL),--model $(MODEL),--runs $(RUNS)) --out reports/faces $(if $(DEVICE),--device $(DEVICE))

calibrate: install  ## where MTCNN puts its landmarks on the runs' training faces, and their framer (for make face; about 12 min): make calibrate RUNS=runs/a [DATA=...]
	$(if $(RUNS),,$(error RUNS is not set: make calibrate RUNS=runs/a (finished runs here: $(or $(FINISHED_RUNS),none))))
	$(FKD) calibrate --runs $(RUNS) $(DATA_ARG)

video: install  ## keypoints tracked on a video: make video VIDEO=clip.mp4 RUNS=runs/a (or MODEL=model.onnx)
	$(if $(VIDEO),,$(error VIDEO is not set: make video VIDEO=clip.mp4 RUNS=runs/a))
	$(if $(RUNS)$(MODEL),,$(error RUNS is not set: make video VIDEO=clip.mp4 RUNS=runs/a (finished runs here: $(or $(FINISHED_RUNS),none)), or MODEL=model.onnx))
	$(FKD) face $(VIDEO) $(if $(MODEL),--model $(MODEL),--runs $(RUNS)) --out reports/faces $(if $(DEVICE),--device $(DEVICE))

kaggle-env: install  ## build (once) a virtual environment with Kaggle's versions (requirements-kaggle.txt)
	$(PY) -m fkd.kaggle.env

gpu-check: install  ## on a CUDA machine: 5-fold CV of configs/gpu.yaml + submission, with GPU, precision, times
	bash kernels/gpu_check.sh $(or $(DATA),$(PROXY))

clean:  ## remove build outputs (keeps runs/, submissions/ and the venv)
	rm -rf build reports .pytest_cache
