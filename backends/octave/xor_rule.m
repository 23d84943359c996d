function [delta, new] = xor_rule(g, old, theta, t, cfg)
% XOR_RULE  One optimizer step, element-wise: from the gradient g, the state slots old
% (a struct: buf, sum, v, u, m, vmax as the optimizer keeps them, each shaped like g),
% the parameters theta and the 1-based step t (a scalar, or (B, 1) for a batch of B
% states, one per row), the step delta that is subtracted (theta - delta) and the new
% slots. The rules and the hyperparameter names are those of reference/optimizers.py.
new = struct();
switch cfg.optimizer
    case 'sgd'
        delta = cfg.lr * g;
    case 'momentum'                   % heavy ball
        new.buf = cfg.momentum * old.buf + g;
        delta = cfg.lr * new.buf;
    case 'nesterov'
        new.buf = cfg.momentum * old.buf + g;
        delta = cfg.lr * (g + cfg.momentum * new.buf);
    case 'adagrad'
        new.sum = old.sum + g .* g;
        delta = cfg.lr * g ./ (sqrt(new.sum) + cfg.eps);
    case 'rmsprop'
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        delta = cfg.lr * g ./ (sqrt(new.v) + cfg.eps);
    case 'adadelta'
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        step = sqrt(old.u + cfg.eps) ./ sqrt(new.v + cfg.eps) .* g;
        new.u = cfg.rho * old.u + (1 - cfg.rho) * (step .* step);
        delta = cfg.lr * step;
    case 'adam'
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        delta = adam_step(new.m, new.v, t, cfg, cfg.adam);
    case 'adamw'                      % decoupled decay: lr * (Adam's step + lambda theta)
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        delta = adam_step(new.m, new.v, t, cfg, 'paper') + cfg.lr * cfg.weight_decay * theta;
    case 'amsgrad'                    % the maximum of the raw v, bias-corrected afterwards
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        new.vmax = max(old.vmax, new.v);
        delta = adam_step(new.m, new.vmax, t, cfg, 'paper');
    otherwise
        error('xor_rule:optimizer', 'unknown optimizer %s', cfg.optimizer);
end
end


function delta = adam_step(m, v, t, cfg, form)
% Adam's step in one of its three forms (reference/adam.py).
switch form
    case 'paper'                      % Kingma & Ba, Algorithm 1
        delta = cfg.lr * (m ./ (1 - cfg.beta1 .^ t)) ./ (sqrt(v ./ (1 - cfg.beta2 .^ t)) + cfg.eps);
    case 'epshat'                     % the paper's "efficient" form: eps outside the corrections
        delta = cfg.lr * sqrt(1 - cfg.beta2 .^ t) ./ (1 - cfg.beta1 .^ t) .* m ./ (sqrt(v) + cfg.eps);
    case {'article', 'seed'}          % the article's constant denominators ('seed': its old name)
        delta = cfg.lr * (m / (1 - cfg.beta1)) ./ (sqrt(v / (1 - cfg.beta2)) + cfg.eps);
    otherwise
        error('xor_rule:adam', 'unknown Adam form %s', form);
end
end
