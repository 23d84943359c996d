function xor_train(init_file, out_file)
% XOR_TRAIN  The 2-H-1 sigmoid XOR network trained with any optimizer of the lineage
% (SGD, momentum, Nesterov, AdaGrad, RMSprop, AdaDelta, Adam in three forms, AdamW,
% AMSGrad), as every row of the cross-check trains it, in plain MATLAB: runs unchanged in
% MATLAB R2016b or newer and in GNU Octave 7 or newer.
%
%   xor_train('init.json', 'trajectory.csv')
%
% init.json is what `python compare.py init --format json` writes: the flat initial
% weights (W1, b1, W2, b2, each row by row), the data X (4,2), y (4,1) and the config
% (optimizer, its hyperparameters, adam form, grad convention, hidden, epochs).
% trajectory.csv gets one line per epoch: the loss (the MSE, before the update), then
% the parameters after the update in the same order: the format that
% `python compare.py --external NAME=FILE` reads.
%
% Every epoch runs xor_gradients and xor_rule, the functions that xor_step runs on a
% batch of recorded states for the lockstep check: one implementation of the step.

init = jsondecode(fileread(init_file));
cfg = init.config;
X = init.X;
y = reshape(init.y, [], 1);
theta = reshape(init.flat, 1, []);
S = initial_slots(cfg, theta);
net = xor_net(X, y, cfg.hidden, cfg.grad);
record = zeros(cfg.epochs, 1 + numel(theta));
for t = 1:cfg.epochs
    [loss, g] = xor_gradients(theta, net);
    [update, S] = xor_rule(g, S, theta, t, cfg);
    theta = theta - update;
    record(t, :) = [loss, theta];
end

fid = fopen(out_file, 'w');
if fid < 0
    error('xor_train:write', 'cannot write %s', out_file);
end
fprintf(fid, [repmat('%.17g,', 1, size(record, 2) - 1), '%.17g\n'], record');
fclose(fid);
end


function S = initial_slots(cfg, theta)
% The optimizer's state before step 1, shaped like theta: AdaGrad's accumulator starts
% at a0, NAdam's mu product at 1, Rprop's step sizes at lr, Yogi's moments at 1e-6, every
% other slot at zero.
S = struct();
zero = zeros(size(theta));
switch cfg.optimizer
    case {'momentum', 'nesterov'}
        S.buf = zero;
    case 'adagrad'
        S.sum = cfg.initial_accumulator + zero;
    case 'rmsprop'
        S.v = zero;
    case 'adadelta'
        S.v = zero;  S.u = zero;
    case {'adam', 'adamw'}
        S.m = zero;  S.v = zero;
    case 'amsgrad'
        S.m = zero;  S.v = zero;  S.vmax = zero;
    case {'nadam', 'nadamw'}
        S.m = zero;  S.v = zero;  S.mu_product = 1 + zero;
    case 'radam'
        S.m = zero;  S.v = zero;
    case 'adamax'
        S.m = zero;  S.umax = zero;
    case 'lion'
        S.m = zero;
    case 'rprop'
        S.step_size = cfg.lr + zero;  S.prev = zero;
    case 'rmsprop_centered'
        S.v = zero;  S.gavg = zero;
    case 'rmsprop_momentum'
        S.v = zero;  S.buf = zero;
    case 'adabelief'
        S.m = zero;  S.s = zero;
    case 'yogi'                       % optax's starting accumulators
        S.m = 1e-06 + zero;  S.v = 1e-06 + zero;
end
end
