-- a schema-2 store written by sweep at commit ce0d3aa (plan of 4 runs, 3 completed with
-- curves and a metric; 12 Chinchilla rows imported twice into 'chin', 3 rows into 'nat')
BEGIN TRANSACTION;
CREATE TABLE curves (
        run INTEGER NOT NULL REFERENCES runs(rid), step INTEGER NOT NULL,
        tokens INTEGER NOT NULL, flops REAL NOT NULL, train_loss REAL, eval_loss REAL, lr REAL,
        end_of_schedule INTEGER NOT NULL DEFAULT 0, eval_bpb REAL,
        PRIMARY KEY (run, step)) WITHOUT ROWID;
INSERT INTO "curves" VALUES(1,0,1024,151977984.0,3.0,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,1,2048,303955968.0,2.99,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,2,3072,455933952.0,2.98,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,3,4096,607911936.0,2.97,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,4,5120,759889920.0,2.96,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,5,6144,911867904.0,2.95,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,6,7168,1063845888.0,2.94,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,7,8192,1215823872.0,2.93,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,8,9216,1367801856.0,2.92,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(1,9,10240,1519779840.0,2.91,2.9,0.001,1,NULL);
INSERT INTO "curves" VALUES(2,0,1024,151977984.0,3.0,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,1,2048,303955968.0,2.99,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,2,3072,455933952.0,2.98,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,3,4096,607911936.0,2.97,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,4,5120,759889920.0,2.96,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,5,6144,911867904.0,2.95,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,6,7168,1063845888.0,2.94,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,7,8192,1215823872.0,2.93,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,8,9216,1367801856.0,2.92,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(2,9,10240,1519779840.0,2.91,2.9,0.001,1,NULL);
INSERT INTO "curves" VALUES(3,0,1024,605945856.0,3.0,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,1,2048,1211891712.0,2.99,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,2,3072,1817837568.0,2.98,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,3,4096,2423783424.0,2.97,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,4,5120,3029729280.0,2.96,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,5,6144,3635675136.0,2.95,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,6,7168,4241620992.0,2.94,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,7,8192,4847566848.0,2.93,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,8,9216,5453512704.0,2.92,NULL,0.001,0,NULL);
INSERT INTO "curves" VALUES(3,9,10240,6059458560.0,2.91,2.9,0.001,1,NULL);
CREATE TABLE external (
    sweep TEXT NOT NULL REFERENCES sweeps(name), params REAL NOT NULL, tokens REAL NOT NULL,
    loss REAL NOT NULL, source TEXT NOT NULL, params_convention TEXT NOT NULL,
    imported_at REAL NOT NULL);
INSERT INTO "external" VALUES('chin',6.79560034928949737538e+09,2.45105957924542695283e+08,5.00558199619624311083e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.9795211721967992783e+09,5.16164661465034484881e+08,4.665232074214,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.63863084092447280882e+09,6.16042128047174453739e+08,3.7655629197937,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.28280434133553171167e+09,7.02550210769639730439e+08,3.7938722433189848715e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.00667338112305307395e+09,811602861.044372,3.44699543022790821922e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',1.73054341612414598465e+09,8.75041997004510164245e+08,3.39573777616063310347e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.9795211721967992783e+09,5.42090286666089153297e+09,2.62828483580139682374e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.63863084092447280882e+09,6.21258309170333576209e+09,2.58532248977207901319e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',2.00667338112305307395e+09,8.05048490374960517852e+09,2.57758746937375082808e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',1.73054341612414598465e+09,9.45033895578532600386e+09,2.5660311889358320414e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',1.79380892390243983263e+09,818680776.817937,3.40592796418647525413e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',1.60907931421226644509e+09,1.00952283682597684856e+09,3.28563798259279149505e+00,'/tmp/h4/chin12.csv','as given',1.79628424088875412933e+09);
INSERT INTO "external" VALUES('chin',6.79560034928949737538e+09,2.45105957924542695283e+08,5.00558199619624311083e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.9795211721967992783e+09,5.16164661465034484881e+08,4.665232074214,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.63863084092447280882e+09,6.16042128047174453739e+08,3.7655629197937,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.28280434133553171167e+09,7.02550210769639730439e+08,3.7938722433189848715e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.00667338112305307395e+09,811602861.044372,3.44699543022790821922e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',1.73054341612414598465e+09,8.75041997004510164245e+08,3.39573777616063310347e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.9795211721967992783e+09,5.42090286666089153297e+09,2.62828483580139682374e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.63863084092447280882e+09,6.21258309170333576209e+09,2.58532248977207901319e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',2.00667338112305307395e+09,8.05048490374960517852e+09,2.57758746937375082808e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',1.73054341612414598465e+09,9.45033895578532600386e+09,2.5660311889358320414e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',1.79380892390243983263e+09,818680776.817937,3.40592796418647525413e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('chin',1.60907931421226644509e+09,1.00952283682597684856e+09,3.28563798259279149505e+00,'/tmp/h4/chin12.csv','as given',1.79628424172926640513e+09);
INSERT INTO "external" VALUES('nat',1000000.0,20000000.0,3.1,'/tmp/h4/small3.csv','with embeddings',1.79628424255214095119e+09);
INSERT INTO "external" VALUES('nat',2000000.0,40000000.0,2.9,'/tmp/h4/small3.csv','with embeddings',1.79628424255214095119e+09);
INSERT INTO "external" VALUES('nat',4000000.0,80000000.0,2.7,'/tmp/h4/small3.csv','with embeddings',1.79628424255214095119e+09);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','2');
CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id), name TEXT NOT NULL,
        value REAL NOT NULL, PRIMARY KEY (run_id, name));
INSERT INTO "metrics" VALUES('w32-d2-t5.02e4-3ce6da','heldout_top1_acc',0.3);
CREATE TABLE runs (
        rid INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE,
        sweep TEXT NOT NULL REFERENCES sweeps(name), position INTEGER,
        in_plan INTEGER NOT NULL DEFAULT 1, spec TEXT NOT NULL,
        width INTEGER, depth INTEGER, params INTEGER, params_nonembed INTEGER, tokens INTEGER,
        flops_6nd REAL, flops_attn REAL, lr REAL,
        state TEXT NOT NULL, job_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL, finished_at REAL, heartbeat REAL, tokens_done INTEGER NOT NULL DEFAULT 0,
        final_loss REAL, final_train_loss REAL, wall_seconds REAL, error TEXT, epochs REAL);
INSERT INTO "runs" VALUES(1,'w32-d2-t5.02e4-3ce6da','nat',0,1,'{"run_id": "w32-d2-t5.02e4-3ce6da", "sweep": "nat", "width": 32, "depth": 2, "heads": 1, "seq_len": 64, "vocab": 256, "params": 34976, "params_nonembed": 24736, "tokens": 50176, "flops_6nd": 7446921216.0, "flops_attn": 9913171968.0, "steps": 49, "batch_size": 16, "batch_tokens": 1024, "lr": 0.014, "schedule": "cosine", "seed": 0, "train": {"warmup_frac": 0.15, "min_lr_frac": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0, "dropout": 0.0, "log_every": 10, "eval_points": 4, "eval_tokens": 65536, "checkpoint_every": 200, "decay_frac": 0.2, "command": null, "nproc": 1, "precision": "fp32", "device": "auto", "compile": false}, "data": {"name": "stdlib", "path": null, "heldout_frac": 0.05}, "warmup_steps": null, "branch_of": null}',32,2,34976,24736,50176,7446921216.0,9913171968.0,0.014,'completed','local:1',1,1.79628424017623329169e+09,1.79628424017639183995e+09,1.79628424017639183995e+09,50176,2.9,2.8,1.0,NULL,NULL);
INSERT INTO "runs" VALUES(2,'w32-d2-t1e5-3a92b4','nat',1,1,'{"run_id": "w32-d2-t1e5-3a92b4", "sweep": "nat", "width": 32, "depth": 2, "heads": 1, "seq_len": 64, "vocab": 256, "params": 34976, "params_nonembed": 24736, "tokens": 100352, "flops_6nd": 14893842432.0, "flops_attn": 19826343936.0, "steps": 98, "batch_size": 16, "batch_tokens": 1024, "lr": 0.014, "schedule": "cosine", "seed": 0, "train": {"warmup_frac": 0.15, "min_lr_frac": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0, "dropout": 0.0, "log_every": 10, "eval_points": 4, "eval_tokens": 65536, "checkpoint_every": 200, "decay_frac": 0.2, "command": null, "nproc": 1, "precision": "fp32", "device": "auto", "compile": false}, "data": {"name": "stdlib", "path": null, "heldout_frac": 0.05}, "warmup_steps": null, "branch_of": null}',32,2,34976,24736,100352,14893842432.0,19826343936.0,0.014,'completed','local:1',1,1.79628424017644119266e+09,1.79628424017650651931e+09,1.79628424017650651931e+09,100352,2.8,2.8,1.0,NULL,NULL);
INSERT INTO "runs" VALUES(3,'w64-d2-t5.02e4-e2b633','nat',2,1,'{"run_id": "w64-d2-t5.02e4-e2b633", "sweep": "nat", "width": 64, "depth": 2, "heads": 2, "seq_len": 64, "vocab": 256, "params": 119104, "params_nonembed": 98624, "tokens": 50176, "flops_6nd": 29691346944.0, "flops_attn": 34623848448.0, "steps": 49, "batch_size": 16, "batch_tokens": 1024, "lr": 0.007, "schedule": "cosine", "seed": 0, "train": {"warmup_frac": 0.15, "min_lr_frac": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0, "dropout": 0.0, "log_every": 10, "eval_points": 4, "eval_tokens": 65536, "checkpoint_every": 200, "decay_frac": 0.2, "command": null, "nproc": 1, "precision": "fp32", "device": "auto", "compile": false}, "data": {"name": "stdlib", "path": null, "heldout_frac": 0.05}, "warmup_steps": null, "branch_of": null}',64,2,119104,98624,50176,29691346944.0,34623848448.0,0.007,'completed','local:1',1,1.79628424017653250694e+09,1.79628424017659044263e+09,1.79628424017659044263e+09,50176,2.69999999999999973354e+00,2.8,1.0,NULL,NULL);
INSERT INTO "runs" VALUES(4,'w64-d2-t1e5-f80a6c','nat',3,1,'{"run_id": "w64-d2-t1e5-f80a6c", "sweep": "nat", "width": 64, "depth": 2, "heads": 2, "seq_len": 64, "vocab": 256, "params": 119104, "params_nonembed": 98624, "tokens": 100352, "flops_6nd": 59382693888.0, "flops_attn": 69247696896.0, "steps": 98, "batch_size": 16, "batch_tokens": 1024, "lr": 0.007, "schedule": "cosine", "seed": 0, "train": {"warmup_frac": 0.15, "min_lr_frac": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0, "dropout": 0.0, "log_every": 10, "eval_points": 4, "eval_tokens": 65536, "checkpoint_every": 200, "decay_frac": 0.2, "command": null, "nproc": 1, "precision": "fp32", "device": "auto", "compile": false}, "data": {"name": "stdlib", "path": null, "heldout_frac": 0.05}, "warmup_steps": null, "branch_of": null}',64,2,119104,98624,100352,59382693888.0,69247696896.0,0.007,'planned',NULL,0,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE sweeps (
    name TEXT PRIMARY KEY, created_at REAL NOT NULL, overrides TEXT NOT NULL,
    config TEXT NOT NULL);
INSERT INTO "sweeps" VALUES('nat',1.79628424017574477196e+09,'["model.widths=[32,64]", "model.depths=[2]", "budget.tokens=[5e4,1e5]"]','{}');
INSERT INTO "sweeps" VALUES('chin',1.79628424088659477235e+09,'[]','{}');
CREATE INDEX runs_sweep ON runs(sweep);
COMMIT;
