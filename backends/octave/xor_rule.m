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
    case 'nadam'                      % torch.optim's NAdam: the mu schedule and its running product
        [delta, new] = nadam_rule(g, old, t, cfg);
    case 'nadamw'                     % NAdam with decoupled decay
        [delta, new] = nadam_rule(g, old, t, cfg);
        delta = delta + cfg.lr * cfg.weight_decay * theta;
    case 'radam'                      % rectified where rho_t > 5, SGD with momentum before
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
        rho_inf = 2 / (1 - cfg.beta2) - 1;
        rho = rho_inf - 2 * t .* cfg.beta2 .^ t ./ (1 - cfg.beta2 .^ t);
        safe = max(rho, 5);
        rect = sqrt((safe - 4) .* (safe - 2) * rho_inf ./ ((rho_inf - 4) * (rho_inf - 2) * safe));
        m_hat = new.m ./ (1 - cfg.beta1 .^ t);
        rectified = m_hat * cfg.lr .* (sqrt(1 - cfg.beta2 .^ t) ./ (sqrt(new.v) + cfg.eps)) .* rect;
        plain = m_hat * cfg.lr;
        on = (rho > 5) & true(size(g));
        delta = plain;
        delta(on) = rectified(on);
    case 'adamax'                     % the infinity norm's decaying maximum, eps inside it
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        new.umax = max(cfg.beta2 * old.umax, abs(g) + cfg.eps);
        delta = (cfg.lr ./ (1 - cfg.beta1 .^ t)) .* (new.m ./ new.umax);
    case 'lion'                       % the sign of an interpolation, from m before the step
        direction = sign((1 - cfg.beta1) * g + cfg.beta1 * old.m);
        new.m = cfg.beta2 * old.m + (1 - cfg.beta2) * g;
        delta = cfg.lr * (direction + cfg.weight_decay * theta);
    case 'rprop'                      % iRprop-: a sign change shrinks the step and skips it
        agreement = g .* old.prev;
        factor = ones(size(g));
        factor(agreement > 0) = cfg.eta_plus;
        factor(agreement < 0) = cfg.eta_minus;
        new.step_size = min(max(old.step_size .* factor, cfg.step_size_min), cfg.step_size_max);
        new.prev = g;
        new.prev(agreement < 0) = 0;
        delta = sign(new.prev) .* new.step_size;
    case 'rmsprop_centered'           % the root of the variance, not of the mean square
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        new.gavg = cfg.rho * old.gavg + (1 - cfg.rho) * g;
        delta = cfg.lr * g ./ (sqrt(new.v - new.gavg .* new.gavg) + cfg.eps);
    case 'rmsprop_momentum'           % momentum on the scaled gradient, lr outside
        new.v = cfg.rho * old.v + (1 - cfg.rho) * (g .* g);
        new.buf = cfg.momentum * old.buf + g ./ (sqrt(new.v) + cfg.eps);
        delta = cfg.lr * new.buf;
    case 'adabelief'                  % the variance around m: the belief
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        surprise = g - new.m;
        new.s = cfg.beta2 * old.s + (1 - cfg.beta2) * (surprise .* surprise) + cfg.eps_root;
        delta = cfg.lr * (new.m ./ (1 - cfg.beta1 .^ t)) ./ (sqrt(new.s ./ (1 - cfg.beta2 .^ t)) + cfg.eps);
    case 'yogi'                       % v moves towards g^2 by at most (1 - beta2) g^2
        new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
        square = g .* g;
        new.v = old.v - (1 - cfg.beta2) * sign(old.v - square) .* square;
        delta = cfg.lr * (new.m ./ (1 - cfg.beta1 .^ t)) ./ (sqrt(new.v ./ (1 - cfg.beta2 .^ t)) + cfg.eps);
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


function [delta, new] = nadam_rule(g, old, t, cfg)
% NAdam as torch.optim computes it: mu_t = beta1 (1 - 0.96^(t psi) / 2), its running product
% kept as a slot, and the Nesterov step from g and m.
new = struct();
new.m = cfg.beta1 * old.m + (1 - cfg.beta1) * g;
new.v = cfg.beta2 * old.v + (1 - cfg.beta2) * (g .* g);
mu = cfg.beta1 * (1 - 0.5 * 0.96 .^ (t * cfg.momentum_decay));
mu_next = cfg.beta1 * (1 - 0.5 * 0.96 .^ ((t + 1) * cfg.momentum_decay));
new.mu_product = old.mu_product .* mu;
denom = sqrt(new.v ./ (1 - cfg.beta2 .^ t)) + cfg.eps;
delta = cfg.lr * (1 - mu) ./ (1 - new.mu_product) .* g ./ denom ...
      + cfg.lr * mu_next ./ (1 - new.mu_product .* mu_next) .* new.m ./ denom;
end
